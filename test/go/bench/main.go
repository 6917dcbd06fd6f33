// Command bench is the Go column of `npm run bench` (bench/streams.ts): a peer shaped exactly like Go
// wslis (hashicorp/yamux from Debian, default config, over gorilla/websocket, a frame's header and body
// as two binary messages), in either role. bench/peer.ts is the same program on wslis, so every pair of
// implementations (ours<->ours, Go<->Go and the mixed ones) runs the same scenarios.
//
//	bench -mode server              listens on 127.0.0.1:0, upgrades with gorilla, runs yamux.Client
//	                                (the wslis server: it opens the streams) and takes commands on stdin.
//	bench -mode device -url ws://…  dials with gorilla, runs yamux.Server (the wslis device) and answers
//	                                every stream by its first byte (see handle).
//
// Output: one JSON object per line: {"event":"listening","port":…}, {"event":"connected"}, and one
// {"event":"reply","cmd":…} per command (its "error" set when it failed). Commands (server unless noted):
//
//	rr COUNT INFLIGHT   COUNT times: open a stream, send 1 KiB, read the device's 1 KiB to its FIN, close;
//	                    INFLIGHT at a time. Replies p50Us, p99Us (per operation), opsPerSec.
//	bulk STREAMS BYTES  STREAMS streams at once, BYTES each in 64 KiB writes; the device answers each with
//	                    the count it read and closes. Replies elapsedUs.
//	hold COUNT          opens COUNT streams at once and exchanges one byte on each, keeping them open.
//	                    Replies openUs: from the first open until every stream answered.
//	release             closes the held streams and waits until the device closed them too.
//	cpu                 (both roles) cpuUs alone, without a GC.
//	stats               (both roles) after a full GC: cpuUs (user + system of the process since it
//	                    started) and memBytes (heap in use + goroutine stacks).
package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
	"github.com/hashicorp/yamux"
)

const (
	// What the first byte of a stream asks the device to do.
	// Debian's yamux (2019) cannot read after its own Close (Read returns EOF at once), so no request
	// ends with a FIN: each says its length, the device answers and closes, the server reads to that FIN.
	opEcho = 'e' // the request is replySize bytes: answer replySize bytes, close
	opSink = 's' // bytes 1-8 hold the request's length (big endian): read it all, answer it in decimal, close
	opHold = 'h' // answer one byte at once, then wait for the server's FIN and close
	// The 1 KiB request and answer of rr.
	replySize = 1024
	chunkSize = 64 * 1024
	// Bounds every wait, so a wedged peer fails the command instead of hanging the bench.
	opTimeout = 120 * time.Second
)

var reply = make([]byte, replySize)
var chunk = make([]byte, chunkSize)

func main() {
	mode := flag.String("mode", "", `"server" (opens streams) or "device" (accepts them)`)
	url := flag.String("url", "", "WebSocket URL to dial in device mode")
	flag.Parse()
	for i := range chunk {
		chunk[i] = byte(i*31 + 7)
	}
	copy(reply, chunk)
	out := &output{enc: json.NewEncoder(os.Stdout)}
	var err error
	switch *mode {
	case "server":
		err = runServer(out)
	case "device":
		err = runDevice(out, *url)
	default:
		err = fmt.Errorf("-mode must be server or device, not %q", *mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type output struct {
	mu  sync.Mutex
	enc *json.Encoder
}

func (o *output) emit(fields map[string]any) {
	o.mu.Lock()
	defer o.mu.Unlock()
	_ = o.enc.Encode(fields)
}

// Go wslis runs yamux with its defaults; only the log goes to stderr.
func yamuxConfig() *yamux.Config {
	config := yamux.DefaultConfig()
	config.LogOutput = os.Stderr
	return config
}

func runServer(out *output) error {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	sessions := make(chan *yamux.Session, 1)
	upgrader := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	go http.Serve(listener, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		session, err := yamux.Client(&wsConn{ws: ws}, yamuxConfig())
		if err != nil {
			ws.Close()
			return
		}
		select {
		case sessions <- session:
			out.emit(map[string]any{"event": "connected"})
		default:
			session.Close() // one device per bench peer
		}
	}))
	out.emit(map[string]any{"event": "listening", "port": listener.Addr().(*net.TCPAddr).Port})

	var session *yamux.Session
	var held []*yamux.Stream
	return readCommands(out, func(cmd string, args []int) (map[string]any, error) {
		if cmd == "stats" {
			return stats(), nil
		}
		if cmd == "cpu" {
			return map[string]any{"cpuUs": cpuMicros()}, nil
		}
		if session == nil {
			select {
			case session = <-sessions:
			case <-time.After(opTimeout):
				return nil, errors.New("no device connected")
			}
		}
		switch {
		case cmd == "rr" && len(args) == 2:
			return requestResponse(session, args[0], args[1])
		case cmd == "bulk" && len(args) == 2:
			return bulk(session, args[0], int64(args[1]))
		case cmd == "hold" && len(args) == 1:
			start := time.Now()
			streams, err := hold(session, args[0])
			held = append(held, streams...)
			return map[string]any{"openUs": micros(time.Since(start))}, err
		case cmd == "release":
			start := time.Now()
			for _, stream := range held {
				stream.Close()
			}
			held = nil
			for session.NumStreams() > 0 {
				if time.Since(start) > opTimeout {
					return nil, fmt.Errorf("%d streams still open", session.NumStreams())
				}
				time.Sleep(time.Millisecond)
			}
			return map[string]any{"elapsedUs": micros(time.Since(start))}, nil
		}
		return nil, fmt.Errorf("unknown command %q %v", cmd, args)
	})
}

func runDevice(out *output, url string) error {
	if url == "" {
		return errors.New("-url is required in device mode")
	}
	ws, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		return err
	}
	session, err := yamux.Server(&wsConn{ws: ws}, yamuxConfig())
	if err != nil {
		return err
	}
	out.emit(map[string]any{"event": "connected"})
	go func() {
		for {
			stream, err := session.AcceptStream()
			if err != nil {
				return
			}
			go handle(stream)
		}
	}()
	return readCommands(out, func(cmd string, args []int) (map[string]any, error) {
		if cmd == "stats" {
			return stats(), nil
		}
		if cmd == "cpu" {
			return map[string]any{"cpuUs": cpuMicros()}, nil
		}
		return nil, fmt.Errorf("unknown device command %q", cmd)
	})
}

// handle is the device's side of every scenario, chosen by the stream's first byte.
func handle(stream *yamux.Stream) {
	defer stream.Close()
	stream.SetDeadline(time.Now().Add(opTimeout))
	first := make([]byte, 1)
	if _, err := io.ReadFull(stream, first); err != nil {
		return
	}
	switch first[0] {
	case opEcho:
		if _, err := io.ReadFull(stream, make([]byte, replySize-1)); err == nil {
			stream.Write(reply)
		}
	case opSink:
		length := make([]byte, 8)
		if _, err := io.ReadFull(stream, length); err != nil {
			return
		}
		total := int64(binary.BigEndian.Uint64(length))
		if n, err := io.CopyN(io.Discard, stream, total-9); err == nil {
			stream.Write([]byte(strconv.FormatInt(n+9, 10)))
		}
	case opHold:
		stream.SetDeadline(time.Time{}) // held as long as the server likes
		// Waits with a 1-byte buffer: io.Copy would pin a pooled 8 KiB buffer per held stream.
		if _, err := stream.Write(first); err == nil {
			for err == nil {
				_, err = stream.Read(first)
			}
		}
	}
}

func requestResponse(session *yamux.Session, count, inflight int) (map[string]any, error) {
	latencies := make([]time.Duration, count)
	start := time.Now()
	err := parallel(count, inflight, func(i int) error {
		begin := time.Now()
		stream, err := session.OpenStream()
		if err != nil {
			return err
		}
		defer stream.Close()
		stream.SetDeadline(time.Now().Add(opTimeout))
		request := make([]byte, replySize)
		copy(request, chunk)
		request[0] = opEcho
		if _, err := stream.Write(request); err != nil {
			return err
		}
		n, err := io.Copy(io.Discard, stream)
		if err != nil {
			return err
		}
		if n != replySize {
			return fmt.Errorf("the device answered %d bytes, not %d", n, replySize)
		}
		latencies[i] = time.Since(begin)
		return nil
	})
	elapsed := time.Since(start)
	sort.Slice(latencies, func(a, b int) bool { return latencies[a] < latencies[b] })
	return map[string]any{
		"p50Us":     percentile(latencies, 0.50),
		"p99Us":     percentile(latencies, 0.99),
		"opsPerSec": float64(count) / elapsed.Seconds(),
	}, err
}

func bulk(session *yamux.Session, streams int, bytes int64) (map[string]any, error) {
	if bytes < 9 {
		return nil, errors.New("bulk needs at least 9 bytes per stream (the op and the length)")
	}
	start := time.Now()
	err := parallel(streams, streams, func(int) error {
		stream, err := session.OpenStream()
		if err != nil {
			return err
		}
		defer stream.Close()
		stream.SetDeadline(time.Now().Add(opTimeout))
		for sent := int64(0); sent < bytes; {
			piece := chunk
			if bytes-sent < chunkSize {
				piece = chunk[:bytes-sent]
			}
			if sent == 0 {
				piece = append([]byte{opSink}, piece[1:]...)
				binary.BigEndian.PutUint64(piece[1:9], uint64(bytes))
			}
			if _, err := stream.Write(piece); err != nil {
				return err
			}
			sent += int64(len(piece))
		}
		answer, err := io.ReadAll(stream)
		if err != nil {
			return err
		}
		if string(answer) != strconv.FormatInt(bytes, 10) {
			return fmt.Errorf("the device counted %q bytes, not %d", answer, bytes)
		}
		return nil
	})
	return map[string]any{"elapsedUs": micros(time.Since(start))}, err
}

func hold(session *yamux.Session, count int) ([]*yamux.Stream, error) {
	streams := make([]*yamux.Stream, count)
	err := parallel(count, count, func(i int) error {
		stream, err := session.OpenStream()
		if err != nil {
			return err
		}
		streams[i] = stream
		stream.SetDeadline(time.Now().Add(opTimeout))
		if _, err := stream.Write([]byte{opHold}); err != nil {
			return err
		}
		_, err = io.ReadFull(stream, make([]byte, 1))
		stream.SetDeadline(time.Time{})
		return err
	})
	kept := streams[:0]
	for _, stream := range streams {
		if stream != nil {
			kept = append(kept, stream)
		}
	}
	return kept, err
}

// parallel runs task(0..count-1) with at most limit at a time and returns the first error.
func parallel(count, limit int, task func(i int) error) error {
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	slots := make(chan struct{}, limit)
	for i := 0; i < count; i++ {
		slots <- struct{}{}
		wg.Add(1)
		go func(i int) {
			defer func() { <-slots; wg.Done() }()
			if err := task(i); err != nil {
				once.Do(func() { first = err })
			}
		}(i)
	}
	wg.Wait()
	return first
}

func stats() map[string]any {
	runtime.GC()
	var memory runtime.MemStats
	runtime.ReadMemStats(&memory)
	return map[string]any{"cpuUs": cpuMicros(), "memBytes": memory.HeapAlloc + memory.StackInuse}
}

// cpuMicros is the process's user + system CPU time since it started, in µs.
func cpuMicros() float64 {
	var usage syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &usage)
	return micros(time.Duration(usage.Utime.Nano() + usage.Stime.Nano()))
}

func percentile(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	return micros(sorted[int(p*float64(len(sorted)-1))])
}

func micros(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }

// readCommands runs one command per stdin line, in order, answering each with a reply line.
func readCommands(out *output, run func(cmd string, args []int) (map[string]any, error)) error {
	lines := bufio.NewScanner(os.Stdin)
	for lines.Scan() {
		words := strings.Fields(lines.Text())
		if len(words) == 0 {
			continue
		}
		args := make([]int, 0, len(words)-1)
		var err error
		for _, word := range words[1:] {
			n, parseErr := strconv.Atoi(word)
			if parseErr != nil || n <= 0 {
				err = fmt.Errorf("%q is not a positive integer", word)
			}
			args = append(args, n)
		}
		var result map[string]any
		if err == nil {
			result, err = run(words[0], args)
		}
		if result == nil {
			result = map[string]any{}
		}
		result["event"] = "reply"
		result["cmd"] = words[0]
		if err != nil {
			result["error"] = err.Error()
		}
		out.emit(result)
	}
	return lines.Err()
}

// wsConn is the WebSocket as the byte stream yamux runs on, as in Go wslis: each Write is one binary
// message (yamux writes a frame's header and its body separately), Read runs across message boundaries.
type wsConn struct {
	ws     *websocket.Conn
	reader io.Reader
}

func (c *wsConn) Read(p []byte) (int, error) {
	for {
		if c.reader == nil {
			kind, reader, err := c.ws.NextReader()
			if err != nil {
				return 0, err
			}
			if kind != websocket.BinaryMessage {
				return 0, errors.New("wslis: received a non-binary WebSocket message")
			}
			c.reader = reader
		}
		n, err := c.reader.Read(p)
		if err == io.EOF {
			c.reader = nil
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
}

// Write needs no lock: yamux's send loop is its only writer.
func (c *wsConn) Write(p []byte) (int, error) {
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *wsConn) Close() error { return c.ws.Close() }
