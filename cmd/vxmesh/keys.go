package main

import (
	"errors"
	"flag"
	"fmt"
	"strconv"

	"github.com/vxmesh/vxmesh/config"
	"github.com/vxmesh/vxmesh/doctor"
)

func init() {
	register(&command{
		name:  "keygen",
		short: "print a new random gossip key (a secret_file line)",
		long: `Prints a new random key, base64-encoded on one line: the format
cluster.secret_file reads (one key a line, the first encrypts, all
decrypt). Put the same file on every host:

  vxmesh keygen > /etc/vxmesh/gossip.key && chmod 600 /etc/vxmesh/gossip.key

To rotate, add the new key as the second line everywhere, reload, move it
first, reload, drop the old one, reload (docs/operations.md).`,
		flags: func(fs *flag.FlagSet) {
			fs.Int("bytes", 32, "key size in `N` bytes: 16, 24 or 32 (AES-128/192/256)")
		},
		run: runKeygen,
	})
	register(&command{
		name:  "keys",
		short: "show the gossip keys of a config by fingerprint (never the keys)",
		long: `Reads cluster.secret_file of the config (--config, or the one the agent
on --socket runs) and prints one line per key: its position, its role
(the first encrypts, every key decrypts), its size and its fingerprint
(sha256: and 16 hex digits of the key's SHA-256). Hosts hold the same key
exactly when the fingerprints match; compare them across hosts to find a
host with a missing or stale key. The keys themselves are never printed.`,
		flags: func(fs *flag.FlagSet) {
			fs.String("config", "", "host config `FILE` (default: the agent's)")
			fs.Bool("json", false, "print the fingerprints as JSON")
			cliSocketFlag(fs)
		},
		run: runKeys,
	})
}

func runKeygen(e *env, args []string) error {
	if len(args) != 0 {
		return usagef("takes no arguments")
	}
	n, _ := strconv.Atoi(cliString(e.fs, "bytes"))
	k, err := doctor.NewKey(n)
	if err != nil {
		return usagef("--bytes: %v", err)
	}
	fmt.Fprintln(e.stdout, k)
	return nil
}

// keyInfo is one key of `vxmesh keys --json`.
type keyInfo struct {
	Line        int    `json:"index"`
	Role        string `json:"role"`
	Bits        int    `json:"bits"`
	Fingerprint string `json:"fingerprint"`
}

func runKeys(e *env, args []string) error {
	if len(args) != 0 {
		return usagef("takes no arguments")
	}
	file := cliString(e.fs, "config")
	if file == "" {
		ctx, cancel := cliCtx()
		defer cancel()
		st, err := cliClient(e.fs).Status(ctx)
		if err != nil {
			return fmt.Errorf("find the agent's config (or give --config): %w", err)
		}
		file = st.Config
	}
	cfg, err := config.Load(file)
	if err != nil {
		return err
	}
	if cfg.Cluster.SecretFile == "" {
		return errors.New(file + ": no cluster.secret_file: gossip is not encrypted (make a key with 'vxmesh keygen')")
	}
	var out []keyInfo
	for i, k := range cfg.Cluster.Keys {
		role := "decrypts"
		if i == 0 {
			role = "encrypts+decrypts"
		}
		out = append(out, keyInfo{Line: i + 1, Role: role, Bits: len(k) * 8, Fingerprint: doctor.KeyFingerprint(k)})
	}
	if cliBool(e.fs, "json") {
		return cliJSON(e.stdout, out)
	}
	fmt.Fprintf(e.stdout, "secret file %s:\n", cfg.Cluster.SecretFile)
	rows := [][]string{{"KEY", "ROLE", "SIZE", "FINGERPRINT"}}
	for _, k := range out {
		rows = append(rows, []string{strconv.Itoa(k.Line), k.Role, fmt.Sprintf("AES-%d", k.Bits), k.Fingerprint})
	}
	cliTable(e.stdout, rows)
	return nil
}
