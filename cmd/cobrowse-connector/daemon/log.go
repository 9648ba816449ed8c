package daemon

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/lmittmann/tint"
)

// NewLogger builds the daemon's logger: coloured text (tint) when w is a terminal and format is
// auto, JSON otherwise; "text" forces tint without colour, "json" forces JSON.
func NewLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: %w", level, err)
	}
	switch format {
	case "auto", "":
		if isTerminal(w) {
			return slog.New(tint.NewTextHandler(w, &tint.Options{Level: lvl, TimeFormat: time.TimeOnly, ReplaceAttr: DurationsAsText})), nil
		}
		return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lvl, ReplaceAttr: DurationsAsText})), nil
	case "text":
		return slog.New(tint.NewTextHandler(w, &tint.Options{Level: lvl, TimeFormat: time.RFC3339, NoColor: true, ReplaceAttr: DurationsAsText})), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lvl, ReplaceAttr: DurationsAsText})), nil
	}
	return nil, fmt.Errorf("log format %q: want auto, text or json", format)
}

// DurationsAsText is a slog ReplaceAttr that writes every time.Duration as Go writes it ("15s",
// "1m30s"), not as a count of nanoseconds (JSON's default), so that every log line says a duration
// the same way whichever package logged it.
func DurationsAsText(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}

// isTerminal reports whether w is a character device, without a terminal library.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
