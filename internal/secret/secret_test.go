package secret

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"testing"
)

// Every encoding a peer may echo a secret back in is redacted, also inside
// longer texts that mix the secret with other bytes.
func TestRedactsEveryEncoding(t *testing.T) {
	const sec = "s3cr3t+/=&é value~!"
	const tok = "0.AQsArefreshTOKENabcdefghij-_"
	r := New(sec, tok, "", "ab") // empty and too-short values are ignored
	form := url.Values{"client_secret": {sec}, "refresh_token": {tok}, "grant_type": {"refresh_token"}}.Encode()
	cases := map[string]string{
		"raw":            "error: " + sec,
		"form body":      "AADSTS7000215: Invalid client secret provided. body=" + form,
		"lower-case hex": strings.ToLower(url.QueryEscape(sec)),
		"%20 for space":  strings.ReplaceAll(url.QueryEscape(sec), "+", "%20"),
		"path escaped":   "/x/" + url.PathEscape(sec),
		"json":           mustJSON(t, map[string]string{"error_description": "got " + sec}),
		"base64":         base64.StdEncoding.EncodeToString([]byte(sec)),
		"base64 url":     base64.RawURLEncoding.EncodeToString([]byte(tok)),
		"hex":            fmt.Sprintf("%x", sec),
	}
	for off := 0; off < 3; off++ {
		// SMTP AUTH PLAIN and HTTP Basic carry the secret after a prefix of
		// any length, inside one base64 text.
		plain := strings.Repeat("u", off) + "\x00user@example.com\x00" + sec
		cases[fmt.Sprintf("AUTH PLAIN offset %d", off)] = "334 " + base64.StdEncoding.EncodeToString([]byte(plain))
		basic := strings.Repeat("x", off) + "user:" + tok
		cases[fmt.Sprintf("Basic offset %d", off)] = "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(basic))
	}
	for name, text := range cases {
		t.Run(name, func(t *testing.T) {
			got := r.String(text)
			if !strings.Contains(got, Placeholder) {
				t.Fatalf("nothing redacted in %q", got)
			}
			for _, s := range []string{sec, tok} {
				if leaks(got, s) {
					t.Fatalf("secret still readable in %q", got)
				}
			}
		})
	}
}

// leaks reports whether text still holds s in a readable encoding, or a
// base64 text that decodes to something containing a long part of it.
func leaks(text, s string) bool {
	if strings.Contains(text, s) || strings.Contains(text, url.QueryEscape(s)) {
		return true
	}
	for _, f := range strings.Fields(text) {
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawURLEncoding} {
			if b, err := enc.DecodeString(f); err == nil && bytes.Contains(b, []byte(s[:len(s)/2])) {
				return true
			}
		}
	}
	return false
}

func mustJSON(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestNilAndEmptyRedactNothing(t *testing.T) {
	var nilR *Redactor
	if nilR.String("abc secret") != "abc secret" || !nilR.Empty() || New().String("x") != "x" {
		t.Fatal("a nil or empty redactor changed its input")
	}
	if New("abcd").Error(nil) != "" {
		t.Fatal("Error(nil) is not empty")
	}
}

func TestWriterRedactsEachWrite(t *testing.T) {
	var buf bytes.Buffer
	w := New("hunter22").Writer(&buf)
	n, err := fmt.Fprintf(w, "level=WARN msg=%q\n", "token endpoint said hunter22")
	if err != nil || n != len("level=WARN msg=\"token endpoint said hunter22\"\n") {
		t.Fatalf("Write returned %d, %v: must report the caller's length", n, err)
	}
	if strings.Contains(buf.String(), "hunter22") || !strings.Contains(buf.String(), Placeholder) {
		t.Fatalf("written: %q", buf.String())
	}
}

// A longer secret that contains a shorter one is redacted whole.
func TestLongestFirst(t *testing.T) {
	r := New("abcd", "abcdefgh")
	if got := r.String("x abcdefgh y"); got != "x "+Placeholder+" y" {
		t.Fatalf("got %q", got)
	}
}

func FuzzRedactor(f *testing.F) {
	f.Add("secret-value", "the secret-value is here")
	f.Fuzz(func(t *testing.T, sec, text string) {
		r := New(sec)
		got := r.String(text + sec + text)
		if len(sec) >= MinLen && strings.Contains(got, sec) && !strings.Contains(Placeholder, sec) {
			t.Fatalf("secret %q survived in %q", sec, got)
		}
	})
}

func TestRotateKeepsTheLastTwo(t *testing.T) {
	r := New("static-secret")
	r.Rotate("token", "token-one")
	r.Rotate("token", "token-two")
	r.Rotate("token", "token-two") // same value: no change
	if got := r.String("token-one token-two static-secret"); got != strings.Repeat(Placeholder+" ", 2)+Placeholder {
		t.Fatalf("got %q", got)
	}
	r.Rotate("token", "token-three")
	if got := r.String("token-one token-two token-three static-secret"); got != "token-one "+strings.Repeat(Placeholder+" ", 2)+Placeholder {
		t.Fatalf("after a third value: %q (the oldest is forgotten, the static one stays)", got)
	}
}

type stringer struct{ s string }

func (s stringer) String() string { return s.s }

func TestHandlerRedactsMessageAndAttributes(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		var buf bytes.Buffer
		r := New("pa55word!")
		var h slog.Handler = slog.NewTextHandler(&buf, nil)
		if format == "json" {
			h = slog.NewJSONHandler(&buf, nil)
		}
		log := slog.New(r.Handler(h)).With("url", "https://u:pa55word!@host/").WithGroup("g")
		log.Warn("token endpoint said pa55word!", "err", errors.New("invalid_client: client_secret=pa55word%21"),
			"form", url.Values{"client_secret": {"pa55word!"}}, "s", stringer{"x pa55word! y"},
			slog.Group("nested", "v", "pa55word!"), "n", 3)
		out := buf.String()
		if strings.Contains(out, "pa55word") || strings.Count(out, Placeholder) < 6 || !strings.Contains(out, "3") {
			t.Fatalf("%s: %s", format, out)
		}
	}
}

type typedErr struct{ msg string }

func (e *typedErr) Error() string { return e.msg }

func TestWrapErrorKeepsTheChain(t *testing.T) {
	r := New("topsecret")
	inner := &typedErr{"refused: client_secret=topsecret"}
	err := r.WrapError(fmt.Errorf("start-up: %w", inner))
	var te *typedErr
	if strings.Contains(err.Error(), "topsecret") || !errors.As(err, &te) || te != inner {
		t.Fatalf("wrapped: %q, as %v", err, te)
	}
	if r.WrapError(nil) != nil || New().WrapError(inner) != error(inner) {
		t.Fatal("nil or an empty redactor must return err itself")
	}
}
