package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
)

// echoSMTP is a hostile mail server: it refuses AUTH and repeats what the
// client sent, as base64 and decoded.
func echoSMTP(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				r := bufio.NewReader(c)
				fmt.Fprint(c, "220 echo ESMTP\r\n")
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					line = strings.TrimRight(line, "\r\n")
					switch cmd := strings.ToUpper(strings.Fields(line + " x")[0]); cmd {
					case "EHLO", "HELO":
						fmt.Fprint(c, "250-echo\r\n250 AUTH PLAIN LOGIN\r\n")
					case "AUTH":
						arg := strings.TrimSpace(line[len("AUTH PLAIN"):])
						dec, _ := base64.StdEncoding.DecodeString(arg)
						fmt.Fprintf(c, "535 5.7.8 Authentication failed for %s (%q, %s)\r\n", arg, dec, url.QueryEscape(string(dec)))
					case "QUIT":
						fmt.Fprint(c, "221 bye\r\n")
						return
					default:
						fmt.Fprint(c, "502 no\r\n")
					}
				}
			}(c)
		}
	}()
	return ln.Addr().String()
}

// Defect 3 of issue 11: an SMTP server echoing AUTH got the password
// printed by `notifier test`.
func TestNotifierTestRedactsAnEchoedPassword(t *testing.T) {
	const password = "Tr0ub4dor&3-horse"
	host, port, _ := net.SplitHostPort(echoSMTP(t))
	cfg := writeFile(t, "mail.yaml", fmt.Sprintf(`channels:
  mail:
    kind: email
    smtp: {host: %q, port: %s, tls: none, username: pcwatch@example.com, password_env: SMTP_PASSWORD}
    from: "pcwatch <pcwatch@example.com>"
    to: [ops@example.com]
default: {channels: [mail]}
`, host, port))
	t.Setenv("SMTP_PASSWORD", password) // the configuration reads the process environment
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"test", "--config", cfg, "--channel", "mail"}, &out, &errOut, envFunc(nil))
	msg := errOut.String()
	if code != 1 || !strings.Contains(msg, "535") || !strings.Contains(msg, "[REDACTED]") {
		t.Fatalf("exit %d, stderr %q: want the refusal, redacted", code, msg)
	}
	plain := "\x00pcwatch@example.com\x00" + password
	for _, leak := range []string{password, url.QueryEscape(password), base64.StdEncoding.EncodeToString([]byte(plain)), url.QueryEscape(plain)} {
		if strings.Contains(msg, leak) {
			t.Fatalf("stderr holds the password (%q): %s", leak, msg)
		}
	}
}
