package ctl

import (
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

func commandNames(root *cobra.Command) []string {
	var names []string
	for _, c := range root.Commands() {
		names = append(names, c.Name())
	}
	return names
}

// TestCommandMakers: each entry of the command table answers to the names its command has
// (name, then aliases), and every command of the tree is in the table once.
func TestCommandMakers(t *testing.T) {
	a := &app{}
	seen := map[string]bool{}
	for _, m := range a.commandMakers() {
		c := m.make()
		if want := append([]string{c.Name()}, c.Aliases...); !slices.Equal(m.names, want) {
			t.Errorf("table names %v, the command answers to %v", m.names, want)
		}
		if seen[c.Name()] {
			t.Errorf("%s twice in the table", c.Name())
		}
		seen[c.Name()] = true
	}
	if len(seen) != 30 {
		t.Errorf("%d commands in the table, want 30", len(seen))
	}
}

// TestAddCommandsOnlyNamed: a command line that names a command makes that command alone
// (found as cobra finds it: a root flag's value is not a command); one that names none, asks
// for help, or names a command that needs the whole tree, makes them all.
func TestAddCommandsOnlyNamed(t *testing.T) {
	all := len((&app{}).commandMakers()) + 1 // and help
	for _, tc := range []struct {
		args []string
		want []string // nil: every command
	}{
		{[]string{"info"}, []string{"help", "info"}},
		{[]string{"--agent", "info", "ls", "-o", "json"}, []string{"help", "ls"}},
		{[]string{"-o", "json", "list"}, []string{"help", "ls"}},
		{[]string{"sessions", "ls"}, []string{"help", "sessions"}},
		{[]string{"info", "--help"}, []string{"help", "info"}},
		{nil, nil},
		{[]string{"--help"}, nil},
		{[]string{"help", "info"}, nil},
		{[]string{"lz"}, nil},
		{[]string{"completion", "bash"}, nil},
	} {
		got := commandNames((&app{}).newRootCommand(tc.args))
		if tc.want == nil && len(got) != all || tc.want != nil && !slices.Equal(got, tc.want) {
			t.Errorf("%q made %d commands %v, want %v (nil: all %d)", tc.args, len(got), got, tc.want, all)
		}
	}
}

// TestQuick: only the commands that hold nothing open are quick, and a line naming any other
// command, even as a flag's value, is not.
func TestQuick(t *testing.T) {
	var quick []string
	for _, m := range (&app{}).commandMakers() {
		if m.quick {
			quick = append(quick, m.names...)
		}
	}
	want := "bind dial accept send recv sendto recvfrom shutdown close ls list get info serve toxics probe validate version setopt completion"
	if got := strings.Join(quick, " "); got != want {
		t.Errorf("quick commands %q, want %q", got, want)
	}
	for _, tc := range []struct {
		line  string
		quick bool
	}{
		{"info", true},
		{"--agent 127.0.0.1:7700 -o json ls", true},
		{"recv s1-2 --wait 10s", true},
		{"help info", true},
		{"", false},
		{"--help", false},
		{"listen tcp 127.0.0.1:0 --accept --attach", false},
		{"run examples/hello-tcp.yaml", false},
		{"events", false},
		{"sessions open", false},
		{"--agent run info", false}, // an agent named run: not quick, to be safe
		{"connect tcp 127.0.0.1:9 info", false},
	} {
		if got := Quick(strings.Fields(tc.line)); got != tc.quick {
			t.Errorf("Quick(%q) = %v, want %v", tc.line, got, tc.quick)
		}
	}
}
