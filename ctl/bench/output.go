package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Machine is where a run ran.
type Machine struct {
	CPU    string `json:"cpu"`
	Cores  int    `json:"cores"`
	Kernel string `json:"kernel"`
	Go     string `json:"go"`
	Date   string `json:"date"`
}

func (m Machine) String() string {
	return fmt.Sprintf("%s, %d cores, %s, %s, %s", m.CPU, m.Cores, m.Kernel, m.Go, m.Date)
}

// machine describes this host: CPU model from /proc/cpuinfo, cores, kernel, Go, today (UTC).
func machine() Machine {
	m := Machine{CPU: "unknown CPU", Cores: runtime.NumCPU(), Kernel: runtime.GOOS, Go: runtime.Version(), Date: time.Now().UTC().Format("2006-01-02")}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), ":")
			if ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = runtime.GOOS + " " + strings.TrimSpace(string(b))
	}
	return m
}

// trimFloat prints v with up to 2 decimals and no trailing zeros: 0.15, 1.3, 2.
func trimFloat(v float64) string {
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// sig3 prints v with 3 significant digits, without exponent for usual magnitudes.
func sig3(v float64) string {
	switch {
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

// formatSeconds prints a duration in seconds as µs or ms.
func formatSeconds(s float64) string {
	switch {
	case s < 1e-3:
		return sig3(s*1e6) + "µs"
	case s < 1:
		return sig3(s*1e3) + "ms"
	default:
		return sig3(s) + "s"
	}
}

// formatValue prints v in unit for people.
func formatValue(v float64, unit string) string {
	switch unit {
	case "bit/s":
		switch {
		case v >= 1e9:
			return sig3(v/1e9) + " Gbit/s"
		case v >= 1e6:
			return sig3(v/1e6) + " Mbit/s"
		default:
			return sig3(v/1e3) + " kbit/s"
		}
	case "datagram/s":
		if v >= 1e6 {
			return sig3(v/1e6) + "M dgram/s"
		}
		return sig3(v/1e3) + "k dgram/s"
	case "s":
		return formatSeconds(v)
	}
	return sig3(v) + " " + unit
}

// cells are the printed columns of a row: figure, value, baseline, baseline value, ratio,
// CPU per GB, baseline CPU per GB, CPU ratio, target, result.
func (r Row) cells() []string {
	value, base, ratio := "-", "-", "-"
	if r.Error != "" {
		value = "error"
		if r.Unimplemented {
			value = "unimplemented"
		}
	} else if r.Value > 0 || r.Measured {
		value = formatValue(r.Value, r.Unit)
	}
	if r.BaselineError != "" {
		base = "error"
	} else if r.BaselineValue > 0 || r.Measured {
		base = formatValue(r.BaselineValue, r.Unit)
	}
	if r.Ratio > 0 {
		ratio = fmt.Sprintf("%.2fx", r.Ratio)
	}
	result := "FAIL"
	if r.Pass {
		result = "pass"
	}
	return append(append([]string{r.Figure, value, r.Baseline, base, ratio}, r.cpuCells()...), r.Target, result)
}

// notes are the lines under the table: errors first, then notes, each naming its row.
func (r Row) notes() []string {
	var out []string
	if r.Error != "" {
		out = append(out, r.Key+": "+r.Error)
	}
	if r.BaselineError != "" {
		out = append(out, r.Key+": baseline: "+r.BaselineError)
	}
	if r.Note != "" {
		out = append(out, r.Key+": "+r.Note)
	}
	return out
}

func summaryLine(r Row) string {
	c := r.cells()
	s := fmt.Sprintf("%s vs %s, ratio %s", c[1], c[3], c[4])
	if r.CPURatio > 0 {
		s += fmt.Sprintf(", CPU/GB %s vs %s, ratio %s", c[5], c[6], c[7])
	}
	return s + ", target " + c[8]
}

var header = []string{"FIGURE", "VALUE", "BASELINE", "VALUE", "RATIO", "CPU/GB", "BASE-CPU/GB", "CPU-RATIO", "TARGET", "RESULT"}

// WriteTable prints the CPU line, the report as an aligned text table, then its notes.
func WriteTable(w io.Writer, rep *Report) error {
	fmt.Fprintln(w, cpuLine(rep.Machine))
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rep.Rows {
		fmt.Fprintln(tw, strings.Join(r.cells(), "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var notes []string
	for _, r := range rep.Rows {
		notes = append(notes, r.notes()...)
	}
	if len(notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range notes {
			fmt.Fprintln(w, "  "+n)
		}
	}
	fmt.Fprintf(w, "\n%d of %d passed; %s; throughput rows ran %s per side%s\n",
		countPassed(rep), len(rep.Rows), rep.Machine, rep.Seconds, quickNote(rep))
	return nil
}

func quickNote(rep *Report) string {
	if rep.Quick {
		return " (--quick: smoke figures, not for docs/performance.md)"
	}
	return ""
}

func countPassed(rep *Report) int {
	n := 0
	for _, r := range rep.Rows {
		if r.Pass {
			n++
		}
	}
	return n
}

// mdEscape keeps a cell inside its Markdown table column.
func mdEscape(s string) string {
	return strings.ReplaceAll(s, "|", `\|`)
}

// WriteMarkdown prints the CPU line, the report as a Markdown table (for docs/performance.md),
// the notes as a list, and a line naming the machine.
func WriteMarkdown(w io.Writer, rep *Report) error {
	fmt.Fprintf(w, "%s\n\n", cpuLine(rep.Machine))
	head := []string{"Figure", "Value", "Baseline", "Baseline value", "Ratio", "CPU/GB", "Baseline CPU/GB", "CPU ratio", "Target", "Result"}
	fmt.Fprintf(w, "| %s |\n", strings.Join(head, " | "))
	fmt.Fprintf(w, "|%s\n", strings.Repeat("---|", len(head)))
	for _, r := range rep.Rows {
		c := r.cells()
		for i := range c {
			c[i] = mdEscape(c[i])
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(c, " | "))
	}
	var notes []string
	for _, r := range rep.Rows {
		notes = append(notes, r.notes()...)
	}
	if len(notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range notes {
			fmt.Fprintf(w, "- %s\n", n)
		}
	}
	_, err := fmt.Fprintf(w, "\nMachine: %s; throughput rows ran %s per side%s.\n", rep.Machine, rep.Seconds, quickNote(rep))
	return err
}

// WriteJSON prints the report as one JSON document.
func WriteJSON(w io.Writer, rep *Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// median returns the middle of v (the upper one of two); 0 for none.
func median[T int64 | float64 | time.Duration](v []T) T {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}
