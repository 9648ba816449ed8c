package procs

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
)

// The harnesses drive their helper processes (a Co-browse Server's control API, ...) with small
// JSON requests; these are the two ends of one.

// CallJSON sends in as JSON (no body when nil) with method to url and returns the reply's status
// and body, read up to limit bytes. Judging the status is the caller's.
func CallJSON(ctx context.Context, c *http.Client, method, url string, in any, limit int64) (int, []byte, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return 0, nil, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	return resp.StatusCode, b, err
}

// ReplyJSON writes v as the JSON reply with status.
func ReplyJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
