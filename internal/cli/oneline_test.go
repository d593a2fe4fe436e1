package cli

import (
	"errors"
	"testing"
)

// The two one-line forms, told apart: OneLine collapses all white space,
// ErrorLine keeps it and joins lines with "; ".
func TestOneLineForms(t *testing.T) {
	for _, tc := range []struct {
		in                 string
		oneLine, errorLine string
	}{
		{"", "", ""},
		{"plain", "plain", "plain"},
		{"a\nb", "a b", "a; b"},
		{"  a \t b\n\n c  ", "a b c", "  a \t b; ;  c  "},
		{"x\r\ny", "x y", "x\r; y"},
	} {
		if got := OneLine(tc.in); got != tc.oneLine {
			t.Errorf("OneLine(%q) = %q, want %q", tc.in, got, tc.oneLine)
		}
		if got := ErrorLine(errors.New(tc.in)); got != tc.errorLine {
			t.Errorf("ErrorLine(%q) = %q, want %q", tc.in, got, tc.errorLine)
		}
	}
	if got := ErrorLine(nil); got != "" {
		t.Errorf("ErrorLine(nil) = %q", got)
	}
	if got := ErrorLine(errors.Join(errors.New("customers: HTTP 500"), errors.New("subscriptions: timeout"))); got != "customers: HTTP 500; subscriptions: timeout" {
		t.Errorf("ErrorLine(joined) = %q", got)
	}
}
