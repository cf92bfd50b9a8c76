package main

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// userHZ is the unit of the CPU times in /proc/<pid>/stat: fixed at 100 per
// second in Linux's user-space ABI whatever the kernel's own tick rate.
const userHZ = 100

// procSample is one reading of a process's CPU time and memory.
type procSample struct {
	CPU   time.Duration // user + system
	RSS   int64         // resident set, in KiB
	Peak  int64         // peak resident set (VmHWM), in KiB
	Taken time.Time
}

// readProc reads process pid's CPU time from /proc/<pid>/stat and its
// memory from /proc/<pid>/status.
func readProc(pid int) (procSample, error) {
	s := procSample{Taken: time.Now()}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// The command name, in parentheses, may hold spaces: fields are
	// counted after its closing parenthesis.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return s, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(stat[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return s, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return s, fmt.Errorf("/proc/%d/stat: bad CPU times", pid)
	}
	s.CPU = time.Duration(utime+stime) * time.Second / userHZ
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch key {
		case "VmRSS":
			s.RSS = parseKB(val)
		case "VmHWM":
			s.Peak = parseKB(val)
		}
	}
	return s, nil
}

// parseKB reads a /proc/<pid>/status value like "  123456 kB".
func parseKB(v string) int64 {
	n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
	return n
}

// selfCPU is the CPU time this process has used so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuTimes are the machine's CPU times in /proc/stat's "cpu" line, in
// ticks; busy excludes idle and iowait.
type cpuTimes struct {
	total, busy, steal int64
	cpus               int
}

// readCPUTimes reads the machine's CPU times from /proc/stat.
func readCPUTimes() (cpuTimes, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}, err
	}
	return parseCPUTimes(string(b))
}

// parseCPUTimes reads /proc/stat: "cpu user nice system idle iowait irq
// softirq steal …" (guest time is already counted in user), then one
// "cpuN" line per CPU.
func parseCPUTimes(stat string) (cpuTimes, error) {
	var t cpuTimes
	found := false
	for line := range strings.SplitSeq(stat, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], "cpu") {
			continue
		}
		if f[0] != "cpu" {
			t.cpus++
			continue
		}
		if len(f) < 9 {
			return t, fmt.Errorf("/proc/stat: %q has too few fields", line)
		}
		var v [8]int64
		for i := range v {
			n, err := strconv.ParseInt(f[i+1], 10, 64)
			if err != nil {
				return t, fmt.Errorf("/proc/stat: %q: %w", line, err)
			}
			v[i] = n
			t.total += n
		}
		t.busy = t.total - v[3] - v[4]
		t.steal = v[7]
		found = true
	}
	if !found {
		return t, fmt.Errorf("/proc/stat: no cpu line")
	}
	return t, nil
}

// procWatch samples a set of processes, and the machine's CPU times, at
// the start and end of a phase.
type procWatch struct {
	pids   []int
	before []procSample
	errs   []error
	cpu    cpuTimes
	cpuErr error
}

func newProcWatch(pids []int) *procWatch {
	return &procWatch{pids: pids, before: make([]procSample, len(pids)), errs: make([]error, len(pids))}
}

// start samples every process and the machine.
func (w *procWatch) start() {
	for i, pid := range w.pids {
		w.before[i], w.errs[i] = readProc(pid)
	}
	w.cpu, w.cpuErr = readCPUTimes()
}

// machine reports how busy the machine's CPUs were since start, and how
// much of their time the hypervisor gave to others (steal); nil where
// /proc/stat cannot be read.
func (w *procWatch) machine() *Machine {
	now, err := readCPUTimes()
	if err != nil || w.cpuErr != nil || now.total <= w.cpu.total {
		return nil
	}
	total := float64(now.total - w.cpu.total)
	return &Machine{
		CPUs:         now.cpus,
		BusyPercent:  round3(100 * float64(now.busy-w.cpu.busy) / total),
		StealPercent: round3(100 * float64(now.steal-w.cpu.steal) / total),
	}
}

// finish samples every process and the machine again, and reports what
// each process used since start and how busy the machine was.
func (w *procWatch) finish() ([]ProcResult, *Machine) {
	var out []ProcResult
	for i, pid := range w.pids {
		r := ProcResult{PID: pid}
		after, err := readProc(pid)
		if err == nil {
			err = w.errs[i]
		}
		if err != nil {
			r.Error = err.Error()
			out = append(out, r)
			continue
		}
		b := w.before[i]
		r.CPUSeconds = round3((after.CPU - b.CPU).Seconds())
		if wall := after.Taken.Sub(b.Taken).Seconds(); wall > 0 {
			r.CPUPercent = round3(100 * (after.CPU - b.CPU).Seconds() / wall)
		}
		r.RSSBeforeKB, r.RSSAfterKB, r.RSSPeakKB = b.RSS, after.RSS, after.Peak
		out = append(out, r)
	}
	return out, w.machine()
}

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }
