package cec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The tolerant JSON of CEC's replies. CEC documents the success bodies of tokenByAkSk and
// getConnectionInfo and the shape of the web adapter's replies, but no error body of tokenByAkSk
// and no error code at all; its examples give numbers as strings (CreateTime, Expires) and codes
// as null. So a value of an unexpected JSON type is read when its meaning is clear (a number as a
// string, a string as a number) and otherwise left empty: a decoder fails only when the body is
// not a JSON object.

// errNotObject is the cause of a reply that is not one JSON object.
var errNotObject = errors.New("reply is not a JSON object")

// flexString is a string, a number or a boolean kept as written, or empty for anything else
// (null, an object, an array).
type flexString string

func (s *flexString) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) > 0 && b[0] == '"':
		var v string
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		*s = flexString(strings.TrimSpace(v))
	case len(b) > 0 && (b[0] == '-' || b[0] >= '0' && b[0] <= '9' || b[0] == 't' || b[0] == 'f'):
		*s = flexString(b)
	default:
		*s = ""
	}
	return nil
}

// flexBool is true, false, "true" or "false" (any case), 1 or 0; set tells whether it was one of
// them.
type flexBool struct{ v, set bool }

func (f *flexBool) UnmarshalJSON(b []byte) error {
	var s flexString
	if err := s.UnmarshalJSON(b); err != nil {
		return err
	}
	switch strings.ToLower(string(s)) {
	case "true", "1":
		*f = flexBool{true, true}
	case "false", "0":
		*f = flexBool{false, true}
	default:
		*f = flexBool{}
	}
	return nil
}

// words are the fields in which CEC's APIs carry a failure: getConnectionInfo errorCode and
// errorReason (documented), the web adapter retCode/retMsg and returnCode/description
// (documented), the API gateway's error_code/error_msg and a generic message/error (not
// documented for these calls; read in case).
type words struct {
	ErrorCode   flexString `json:"errorCode"`
	ErrorReason flexString `json:"errorReason"`
	RetCode     flexString `json:"retCode"`
	RetMsg      flexString `json:"retMsg"`
	ReturnCode  flexString `json:"returnCode"`
	Description flexString `json:"description"`
	GwCode      flexString `json:"error_code"`
	GwMsg       flexString `json:"error_msg"`
	Message     flexString `json:"message"`
	Error       flexString `json:"error"`
}

// codeAndReason returns the failure's code and words, the first of each that is set.
func (w words) codeAndReason() (code, reason string) {
	code = string(firstOf(w.ErrorCode, w.RetCode, w.ReturnCode, w.GwCode))
	reason = string(firstOf(w.ErrorReason, w.RetMsg, w.Description, w.GwMsg, w.Message, w.Error))
	return code, reason
}

// text is the failure as a Reason: "errorCode X: words", or what there is of it.
func (w words) text() string {
	code, reason := w.codeAndReason()
	switch {
	case code != "" && reason != "":
		return clip("errorCode " + code + ": " + reason)
	case code != "":
		return clip("errorCode " + code)
	}
	return clip(reason)
}

func firstOf(vs ...flexString) flexString {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// decodeObject unmarshals body, which must be one JSON object, into v.
func decodeObject(body []byte, v any) error {
	body = bytes.TrimSpace(body)
	if len(body) == 0 || body[0] != '{' {
		return errNotObject
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("%w: %w", errNotObject, err)
	}
	return nil
}

// serverReason is the server's words for a failed call: the failure fields of a JSON body, else
// the body clipped, else the status line; prefixed with the HTTP status when it is not 200.
func serverReason(status int, body []byte) string {
	prefix := ""
	if status != http.StatusOK {
		prefix = fmt.Sprintf("HTTP %d", status)
	}
	var w words
	text := ""
	if decodeObject(body, &w) == nil {
		text = w.text()
	}
	if text == "" {
		text = clip(string(bytes.TrimSpace(body)))
	}
	switch {
	case text == "" && prefix == "":
		return ""
	case text == "":
		return prefix + " " + http.StatusText(status)
	case prefix == "":
		return text
	}
	return prefix + ": " + text
}

// tokenReply is tokenByAkSk's answer: {"AccessToken","ApplyType","CreateTime","Expires","Scope",
// "AppKey","UserID"}, CreateTime and Expires documented as strings of seconds.
type tokenReply struct {
	AccessToken string
	ApplyType   string
	Scope       string
	// Expires is the lifetime CEC says the token has; zero when it did not say or the value is
	// unreadable.
	Expires time.Duration
	// Failure is the reply's failure words, when it carries any.
	Failure string
}

// decodeTokenReply reads a tokenByAkSk body. Keys are matched in any case (AccessToken,
// accessToken); access_token and expires_in are read too, in case a gateway answers OAuth-style.
func decodeTokenReply(body []byte) (tokenReply, error) {
	var raw struct {
		AccessToken  flexString `json:"AccessToken"`
		AccessToken2 flexString `json:"access_token"`
		ApplyType    flexString `json:"ApplyType"`
		Expires      flexString `json:"Expires"`
		ExpiresIn    flexString `json:"expires_in"`
		Scope        flexString `json:"Scope"`
		words
	}
	if err := decodeObject(body, &raw); err != nil {
		return tokenReply{}, err
	}
	r := tokenReply{AccessToken: string(firstOf(raw.AccessToken, raw.AccessToken2)), ApplyType: string(raw.ApplyType),
		Scope: string(raw.Scope), Failure: raw.words.text()}
	if n, err := strconv.ParseInt(string(firstOf(raw.Expires, raw.ExpiresIn)), 10, 64); err == nil && n > 0 && n <= 1<<31 {
		r.Expires = time.Duration(n) * time.Second
	}
	return r, nil
}

// connInfo is one side's connection information from getConnectionInfo.
type connInfo struct {
	RoomID       string `json:"roomId"`
	WSSURL       string `json:"wssUrl"`             // the external address (wssUrlOut), the one the pages use
	WSSURLIn     string `json:"wssUrlIn,omitempty"` // the internal address (wssUrl), kept for the record
	ConnectParam string `json:"connectParam"`
}

// connInfoReply is getConnectionInfo's answer: {"success","data":{"roomId","wssUrl","wssUrlOut",
// "connectParam"},"errorCode","errorReason"}.
type connInfoReply struct {
	// Success is the reply's success; when the reply has no success field it is true if it has
	// data and no failure code (the web adapter's variant says retCode "0" instead).
	Success bool
	Info    connInfo // WSSURL is wssUrlOut, WSSURLIn wssUrl
	Failure string   // errorCode and errorReason, when set
}

// decodeConnInfo reads a getConnectionInfo body. data.signature is read when data.connectParam is
// missing: the web adapter's variant of the call names the same value so.
func decodeConnInfo(body []byte) (connInfoReply, error) {
	var raw struct {
		Success flexBool        `json:"success"`
		Data    json.RawMessage `json:"data"`
		words
	}
	if err := decodeObject(body, &raw); err != nil {
		return connInfoReply{}, err
	}
	var data struct {
		RoomID       flexString `json:"roomId"`
		WSSURL       flexString `json:"wssUrl"`
		WSSURLOut    flexString `json:"wssUrlOut"`
		ConnectParam flexString `json:"connectParam"`
		Signature    flexString `json:"signature"`
	}
	hasData := decodeObject(raw.Data, &data) == nil
	r := connInfoReply{
		Info: connInfo{RoomID: string(data.RoomID), WSSURL: string(data.WSSURLOut), WSSURLIn: string(data.WSSURL),
			ConnectParam: string(firstOf(data.ConnectParam, data.Signature))},
		Failure: raw.words.text(),
	}
	code, _ := raw.words.codeAndReason()
	switch {
	case raw.Success.set:
		r.Success = raw.Success.v
	case code != "":
		r.Success = code == "0"
	default:
		r.Success = hasData
	}
	return r, nil
}

// releaseReply is releaseConnection's answer: {"retCode","retMsg"}, "0" meaning success.
type releaseReply struct {
	OK      bool
	Failure string
}

// decodeRelease reads a releaseConnection body. An empty body, or an object that says nothing of
// the outcome, is a success: the HTTP status said so. An explicit success:false or a code other
// than "0" is a failure.
func decodeRelease(body []byte) (releaseReply, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return releaseReply{OK: true}, nil
	}
	var raw struct {
		Success flexBool `json:"success"`
		words
	}
	if err := decodeObject(body, &raw); err != nil {
		return releaseReply{}, err
	}
	code, _ := raw.words.codeAndReason()
	ok := true
	switch {
	case raw.Success.set:
		ok = raw.Success.v
	case code != "":
		ok = code == "0"
	}
	r := releaseReply{OK: ok}
	if !ok {
		r.Failure = raw.words.text()
	}
	return r, nil
}
