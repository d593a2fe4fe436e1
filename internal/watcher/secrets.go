package watcher

import (
	"fmt"
	"net/url"

	"golang.org/x/oauth2"

	"github.com/pcwatch/pcwatch/internal/natsconn"
	pc "github.com/pcwatch/pcwatch/internal/partnercenter"
	"github.com/pcwatch/pcwatch/internal/secret"
)

// newRedactor collects every secret the watcher is configured with: the
// Partner Center credentials (from the environment or their _FILE
// variants), the NATS credentials and those inside the NATS URL (nats, as
// natsconn.Credentials returned it). Access tokens are added as they are
// obtained (rotatingToken).
func newRedactor(getenv func(string) string, nats natsconn.Options) (*secret.Redactor, error) {
	red := secret.New()
	if creds, err := pc.CredentialsFromEnv(getenv); err == nil {
		red.Add(creds.ClientSecret, creds.RefreshToken, creds.StaticToken)
	}
	red.Add(nats.Secrets()...)
	if nats.URL != "" {
		if _, err := url.Parse(nats.URL); err != nil {
			return nil, fmt.Errorf("--nats-url is not a URL (want nats://host:4222): %v", secret.New(nats.URL).Error(err))
		}
	}
	return red, nil
}

// rotatingToken registers every access token it hands out with the
// redactor, so a Partner Center error body that echoes the request's
// Authorization header is redacted too.
type rotatingToken struct {
	ts  oauth2.TokenSource
	red *secret.Redactor
}

func (r rotatingToken) Token() (*oauth2.Token, error) {
	t, err := r.ts.Token()
	if err != nil {
		return nil, err
	}
	r.red.Rotate("partner-center-access-token", t.AccessToken)
	return t, nil
}
