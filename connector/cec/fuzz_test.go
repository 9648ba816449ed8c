package cec

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// FuzzDecodeReplies feeds the decoders of CEC's replies (tokenByAkSk, getConnectionInfo,
// releaseConnection, and the failure words of any of them) arbitrary bodies: they never panic,
// fail only on a body that is not one JSON object, and keep a Reason within its bound.
func FuzzDecodeReplies(f *testing.F) {
	for _, seed := range []string{
		`{"AccessToken":"tok","ApplyType":"Bearer","CreateTime":"1700000000","Expires":"600","Scope":"s","AppKey":"ak","UserID":"Anonymous"}`,
		`{"accessToken":"tok","expires":600}`,
		`{"access_token":"tok","expires_in":"99999999999999999999"}`,
		`{"success":true,"data":{"roomId":"r","wssUrl":"wss://10.0.0.1/ws","wssUrlOut":"wss://h/ws","connectParam":"p"},"errorCode":null,"errorReason":null}`,
		`{"success":"false","errorCode":1001,"errorReason":"room busy"}`,
		`{"retCode":"0","data":{"roomId":"r","signature":"s"}}`,
		`{"retCode":-1,"retMsg":"x"}`,
		`{"error_code":"APIGW.0301","error_msg":"bad"}`,
		`{"success":true,"data":"not an object"}`,
		`{"data":[1,2],"errorCode":{"a":1}}`,
		`[]`, `null`, `"x"`, ``, `{`, `{"success":tru}`,
		`{"errorReason":"` + strings.Repeat("é", 600) + `"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		isObject := strings.HasPrefix(strings.TrimSpace(string(body)), "{")
		tok, err := decodeTokenReply(body)
		if err != nil && isObject && validJSON(body) {
			t.Fatalf("decodeTokenReply failed on a JSON object: %v", err)
		}
		if err == nil {
			if tok.Expires < 0 {
				t.Fatalf("negative lifetime %s", tok.Expires)
			}
			checkReason(t, tok.Failure)
		}
		info, err := decodeConnInfo(body)
		if err != nil && isObject && validJSON(body) {
			t.Fatalf("decodeConnInfo failed on a JSON object: %v", err)
		}
		if err == nil {
			checkReason(t, info.Failure)
		}
		rel, err := decodeRelease(body)
		if err == nil {
			if rel.OK && rel.Failure != "" {
				t.Fatalf("a release both done and failed: %+v", rel)
			}
			checkReason(t, rel.Failure)
		}
		for _, st := range []int{http.StatusOK, http.StatusUnauthorized, http.StatusBadGateway} {
			checkReason(t, strings.TrimPrefix(serverReason(st, body), "HTTP 502: "))
		}
	})
}

func checkReason(t *testing.T, r string) {
	t.Helper()
	if len(r) > 512+len("...")+len("HTTP 401: ") { // connector.ClipReason keeps 512 bytes
		t.Fatalf("reason of %d bytes", len(r))
	}
}

func validJSON(b []byte) bool {
	var v any
	return json.Unmarshal(b, &v) == nil
}
