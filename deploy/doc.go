// Package deploy holds pcwatch's deployment artifacts (no Go code): the
// docker compose file, the Kubernetes kustomize base and overlay, the
// systemd units, the Grafana dashboard and the Prometheus alert rules.
// Its tests check every artifact offline against the programs' real
// flags, variables, secrets, ports and metrics (README, Deploy).
package deploy
