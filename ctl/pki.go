package ctl

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sockagent/sockagent/ctl/pki"
)

const pkiLong = `Pki makes the certificates of a lab, so that agents serve mutual TLS in a minute:
'pki init' creates a CA, an agent certificate and a client certificate; 'pki client' signs
more client certificates with that CA (one per person or CI job: an agent's policy and audit
log name the caller by the certificate's common name).

Keys are ECDSA P-256 (PKCS #8 PEM, mode 0600); certificates are PEM. Existing files are
never overwritten without --force. The CA key (ca-key.pem) signs anything: keep it off the
lab hosts, which need only ca.pem and their own certificate and key.

Exit status: 0 files written; 1 a file could not be read or written (the CA of 'pki
client', the directory); 2 usage error, a bad --agent-san or --name, or files that exist
(without --force).`

func (a *app) pkiCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pki",
		Short: "Make a lab CA, agent and client certificates for mutual TLS",
		Long:  pkiLong,
		Example: `  sockctl pki init --dir lab-pki --agent-san 127.0.0.1,localhost,10.77.0.2
  sockctl pki client --dir lab-pki --name alice`,
		Args: args(0),
		RunE: func(*cobra.Command, []string) error {
			return usagef("pki needs a command: init or client")
		},
	}
	cmd.AddCommand(a.pkiInitCommand(), a.pkiClientCommand())
	return cmd
}

func (a *app) pkiInitCommand() *cobra.Command {
	var (
		opts pki.Options
		sans []string
	)
	cmd := &cobra.Command{
		Use:   "init --dir DIR",
		Short: "Create a CA, an agent certificate and a client certificate in DIR",
		Long: `Init creates, in DIR (made 0700 if missing):

  ca.pem, ca-key.pem          the lab CA
  agent.pem, agent-key.pem    the agents' certificate (server auth), naming --agent-san
  client.pem, client-key.pem  a client certificate (client auth), common name --client-name

and prints the sockagent, sockctl and grpcurl flags that use them. One agent certificate
may serve every host of a lab: give all the hosts' addresses (and names) as --agent-san.
An agent reached by an address its certificate does not name fails verification; then
dial it by a name it has, or give sockctl --server-name.`,
		Example: `  sockctl pki init --dir pki
  sockctl pki init --dir pki --agent-san 127.0.0.1,localhost,10.77.0.2,10.77.0.3 --client-name ci --days 30`,
		Args: args(0),
		RunE: func(*cobra.Command, []string) error {
			opts.AgentSANs = splitList(sans)
			if opts.Days <= 0 {
				return usagef("--days must be positive")
			}
			p, err := pki.Init(opts)
			if err != nil {
				return pkiError("pki init", err)
			}
			w := a.out
			addr := agentHostPort(orDefault(opts.AgentSANs, pki.DefaultAgentSANs))
			w.printf("wrote %s, %s (the CA: keep ca-key.pem safe)\n", p.CA, p.CAKey)
			w.printf("wrote %s, %s (the agent, for %s)\n", p.Agent, p.AgentKey, strings.Join(orDefault(opts.AgentSANs, pki.DefaultAgentSANs), ", "))
			w.printf("wrote %s, %s (the client %q)\n", p.Client, p.ClientKey, orDefault1(opts.ClientName, pki.DefaultClientName))
			w.printf("\nAgent (mTLS: only clients with a certificate from this CA):\n")
			w.printf("  sockagent --listen %s --tls-cert %s --tls-key %s --client-ca %s\n", addr, p.Agent, p.AgentKey, p.CA)
			w.printf("\nsockctl:\n")
			w.printf("  sockctl --agent %s --ca %s --cert %s --key %s info\n", addr, p.CA, p.Client, p.ClientKey)
			w.printf("\nInventory entry (sockctl run --inventory FILE):\n")
			w.printf("  agents:\n    NAME: {address: %s, ca: %s, cert: %s, key: %s}\n", addr, p.CA, p.Client, p.ClientKey)
			w.printf("\ngrpcurl:\n")
			w.printf("  grpcurl -cacert %s -cert %s -key %s %s list\n", p.CA, p.Client, p.ClientKey, addr)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.Dir, "dir", "", "`DIR`ectory to write the files into (required)")
	fl.StringSliceVar(&sans, "agent-san", nil, "IP addresses and DNS names the agent certificate names, comma-separated or repeated (default "+strings.Join(pki.DefaultAgentSANs, ",")+")")
	fl.StringVar(&opts.ClientName, "client-name", pki.DefaultClientName, "common name of the client certificate (the caller's identity on the agent)")
	fl.IntVar(&opts.Days, "days", pki.DefaultDays, "days the certificates are valid")
	fl.BoolVar(&opts.Force, "force", false, "overwrite existing files")
	_ = cmd.MarkFlagRequired("dir")
	return cmd
}

func (a *app) pkiClientCommand() *cobra.Command {
	var opts pki.Options
	cmd := &cobra.Command{
		Use:   "client --dir DIR --name NAME",
		Short: "Sign one more client certificate with the CA in DIR",
		Long: `Client signs a client certificate (client auth, common name NAME) with the CA that
'pki init' wrote to DIR, as DIR/NAME.pem and DIR/NAME-key.pem. It is valid for --days, but
never longer than the CA.`,
		Example: `  sockctl pki client --dir pki --name alice
  sockctl --ca pki/ca.pem --cert pki/alice.pem --key pki/alice-key.pem ls`,
		Args: args(0),
		RunE: func(*cobra.Command, []string) error {
			if opts.Days <= 0 {
				return usagef("--days must be positive")
			}
			p, err := pki.AddClient(opts)
			if err != nil {
				return pkiError("pki client", err)
			}
			a.out.printf("wrote %s, %s (the client %q, signed by %s)\n", p.Client, p.ClientKey, opts.ClientName, p.CA)
			a.out.printf("\n  sockctl --agent ADDR:7700 --ca %s --cert %s --key %s info\n", p.CA, p.Client, p.ClientKey)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.Dir, "dir", "", "`DIR`ectory of the CA (ca.pem, ca-key.pem), where the files go (required)")
	fl.StringVar(&opts.ClientName, "name", "", "common name of the certificate, and its file names (required)")
	fl.IntVar(&opts.Days, "days", pki.DefaultDays, "days the certificate is valid (at most as long as the CA)")
	fl.BoolVar(&opts.Force, "force", false, "overwrite existing files")
	_ = cmd.MarkFlagRequired("dir")
	_ = cmd.MarkFlagRequired("name")
	return cmd
}

// pkiError classifies a pki failure: existing files (the fix is --force or another
// directory) and bad options are usage errors, anything else a failure.
func pkiError(op string, err error) error {
	if errors.Is(err, pki.ErrExist) || errors.Is(err, pki.ErrInvalid) {
		return usagef("%s: %v", op, err)
	}
	return failed(fmt.Errorf("%s: %w", op, err))
}

// splitList splits comma-separated values and drops empty ones.
func splitList(vals []string) []string {
	var out []string
	for _, v := range vals {
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}

// agentHostPort is the agent address the printed commands use: the first IP address among
// the SANs that is not loopback, else the first SAN; port 7700.
func agentHostPort(sans []string) string {
	pick := sans[0]
	for _, s := range sans {
		if ip := net.ParseIP(strings.Trim(s, "[]")); ip != nil && !ip.IsLoopback() {
			pick = s
			break
		}
	}
	return net.JoinHostPort(strings.Trim(pick, "[]"), "7700")
}

func orDefault(v, def []string) []string {
	if len(v) == 0 {
		return def
	}
	return v
}

func orDefault1(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
