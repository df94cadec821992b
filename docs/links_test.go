// Package docs holds the project's documentation; its test checks that the README and the
// pages here link to what exists and quote the commands CI runs.
package docs

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"
)

// page is a Markdown file: its links and the anchors of its headings, outside code.
type page struct {
	links   []link
	anchors map[string]bool
}

type link struct {
	line   int
	target string
}

var (
	linkRE       = regexp.MustCompile(`\[[^\]]*\]\(([^)\s]+)\)`)
	inlineCodeRE = regexp.MustCompile("`[^`]*`")
)

// slug is GitHub's anchor for a heading: lower case, punctuation dropped but for hyphens and
// underscores, spaces as hyphens.
func slug(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

func readPage(t *testing.T, path string) page {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p := page{anchors: map[string]bool{}}
	seen := map[string]int{}
	code := false
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.HasPrefix(line, "```") {
			code = !code
			continue
		}
		if code {
			continue
		}
		if h, ok := strings.CutPrefix(strings.TrimLeft(line, "#"), " "); ok && strings.HasPrefix(line, "#") {
			s := slug(h)
			if k := seen[s]; k > 0 {
				p.anchors[fmt.Sprintf("%s-%d", s, k)] = true
			} else {
				p.anchors[s] = true
			}
			seen[s]++
		}
		for _, m := range linkRE.FindAllStringSubmatch(inlineCodeRE.ReplaceAllString(line, ""), -1) {
			p.links = append(p.links, link{line: n, target: m[1]})
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return p
}

// Every relative link of the README and of docs/*.md names a file that exists, and its
// anchor a heading of that file.
func TestLinks(t *testing.T) {
	files, err := filepath.Glob("*.md")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "../README.md")
	pages := map[string]page{}
	get := func(path string) page {
		path = filepath.Clean(path)
		p, ok := pages[path]
		if !ok {
			p = readPage(t, path)
			pages[path] = p
		}
		return p
	}
	checked := 0
	for _, file := range files {
		for _, l := range get(file).links {
			if strings.Contains(l.target, "://") || strings.HasPrefix(l.target, "mailto:") {
				continue
			}
			checked++
			target, anchor, _ := strings.Cut(l.target, "#")
			path := file
			if target != "" {
				path = filepath.Join(filepath.Dir(file), target)
				if _, err := os.Stat(path); err != nil {
					t.Errorf("%s:%d: link to %s: %v", file, l.line, l.target, err)
					continue
				}
			}
			if anchor == "" {
				continue
			}
			if !strings.HasSuffix(path, ".md") {
				t.Errorf("%s:%d: link to %s: an anchor in a file that is not Markdown", file, l.line, l.target)
				continue
			}
			if !get(path).anchors[anchor] {
				t.Errorf("%s:%d: link to %s: %s has no heading #%s", file, l.line, l.target, path, anchor)
			}
		}
	}
	if checked < 20 {
		t.Errorf("checked %d links, want the README's and the pages' (at least 20)", checked)
	}
}

func TestSlug(t *testing.T) {
	for h, want := range map[string]string{
		"Logs and stopping":                   "logs-and-stopping",
		"Scenarios: `sockctl run FILE`":       "scenarios-sockctl-run-file",
		"Netcat through an agent: `nc`":       "netcat-through-an-agent-nc",
		"Output for scripts: `-o id`":         "output-for-scripts--o-id",
		"mTLS in a minute":                    "mtls-in-a-minute",
		"Dependencies, and why each is there": "dependencies-and-why-each-is-there",
	} {
		if got := slug(h); got != want {
			t.Errorf("slug(%q) = %q, want %q", h, got, want)
		}
	}
}

// shBlock returns the commands of the first ```sh block after marker in text, without
// their comments.
func shBlock(t *testing.T, text, marker string) []string {
	t.Helper()
	_, rest, ok := strings.Cut(text, marker)
	if !ok {
		t.Fatalf("no %q", marker)
	}
	_, rest, ok = strings.Cut(rest, "```sh\n")
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatalf("no sh block after %q", marker)
	}
	var cmds []string
	for _, l := range strings.Split(strings.TrimSpace(block), "\n") {
		cmd, _, _ := strings.Cut(l, "#")
		if cmd = strings.TrimSpace(cmd); cmd != "" {
			cmds = append(cmds, cmd)
		}
	}
	return cmds
}

// The README's quick start is two commands: a scenario that exists, and the test command
// .ci/run runs as "the README's test command, exactly"; the Development section gives the
// same. The README stays a newcomer's page.
func TestReadmeCommands(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	ci, err := os.ReadFile("../.ci/run")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(ci), "# The README's test command, exactly:\n")
	ciTest, _, _ := strings.Cut(rest, "\n")
	ciTest = strings.TrimSpace(ciTest)
	if !ok || !strings.HasPrefix(ciTest, "go test ") {
		t.Fatalf(".ci/run has no test command after its marker: %q", ciTest)
	}
	quick := shBlock(t, string(readme), "## Quick start")
	if len(quick) != 2 || quick[1] != ciTest {
		t.Errorf("quick start %q: want two commands, the second %q as .ci/run runs it", quick, ciTest)
	}
	if f, ok := strings.CutPrefix(quick[0], "go run ./ctl/cmd/sockctl run "); !ok {
		t.Errorf("quick start's first command %q is not a scenario run", quick[0])
	} else if _, err := os.Stat(filepath.Join("..", f)); err != nil {
		t.Errorf("quick start runs %s: %v", f, err)
	}
	if dev := shBlock(t, string(readme), "## Development"); len(dev) == 0 || dev[0] != ciTest {
		t.Errorf("Development's first command %q, want %q", dev, ciTest)
	}
	if n := strings.Count(string(readme), "\n"); n > 150 {
		t.Errorf("README.md has %d lines: keep it to what a newcomer needs (150), move reference to docs/", n)
	}
}
