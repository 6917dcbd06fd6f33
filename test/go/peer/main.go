// Command peer is an independent wslis peer for the conformance tests in test/interop-go.test.ts:
// hashicorp/yamux (the Debian package, 2019) over gorilla/websocket, framed the way Go wslis frames it.
//
// It plays either role of Go wslis:
//
//	peer -mode server              listens on 127.0.0.1:0, upgrades with gorilla, runs yamux.Client
//	                               (odd stream IDs) over the WebSocket and opens streams to the device.
//	peer -mode device -url ws://…  dials with gorilla, runs yamux.Server (even stream IDs) and echoes
//	                               every stream it accepts.
//
// The test drives it with one command per line on stdin and reads one JSON object per line on stdout:
// events ({"event":"listening","port":…}, "connected", "echoed", "goaway", "closed") and one
// {"event":"reply","cmd":…} per command. Diagnostics (yamux's own log) go to stderr.
//
// Commands:
//
//	echo SIZE COUNT   open COUNT streams at once, send SIZE pseudo-random bytes on each, read the echo back;
//	                  the reply lists, per stream, the SHA-256 of what was sent and of what came back.
//	ack               open a stream without writing and report the first frame the peer sends on it.
//	hold              open a stream, send "hold\n", leave it open (the peer's pending read is the point).
//	ping              session.Ping(); the reply carries the RTT in microseconds.
//	goaway            session.GoAway(): no new streams from the peer, existing ones go on.
//	close             session.Close(): Debian's yamux closes the WebSocket without sending GoAway.
package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/hashicorp/yamux"
)

// opTimeout bounds every stream operation here, so a wedged peer fails the command instead of hanging it.
// The test side has its own, shorter, timeouts; this one only guarantees the program never hangs forever.
const opTimeout = 120 * time.Second

// yamux frame header (hashicorp/yamux spec.md): version, type, flags (big endian), stream ID, length.
const (
	headerSize     = 12
	typeData       = 0
	typeGoAway     = 3
	flagACK        = 2
	writeChunkSize = 32 * 1024
)

func main() {
	mode := flag.String("mode", "", `"server" (Go wslis server, yamux client) or "device" (Go wslis client, yamux server)`)
	url := flag.String("url", "", "WebSocket URL to dial in device mode")
	flag.Parse()

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
		fmt.Fprintln(os.Stderr, "peer:", err)
		os.Exit(1)
	}
}

// output writes one JSON object per line; goroutines share it.
type output struct {
	mu  sync.Mutex
	enc *json.Encoder
}

func (o *output) emit(fields map[string]any) {
	o.mu.Lock()
	defer o.mu.Unlock()
	_ = o.enc.Encode(fields)
}

func yamuxConfig() *yamux.Config {
	config := yamux.DefaultConfig()
	config.LogOutput = os.Stderr
	return config
}

// runServer is the Go wslis server: one device, then commands from stdin until stdin ends.
func runServer(out *output) error {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	sessions := make(chan *yamux.Session, 1)
	taps := make(chan *tap, 1)
	upgrader := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return // the upgrader already answered with an HTTP error
		}
		conn := newWSConn(ws, out)
		session, err := yamux.Client(conn, yamuxConfig())
		if err != nil {
			ws.Close()
			return
		}
		out.emit(map[string]any{"event": "connected", "remote": r.RemoteAddr, "deviceId": r.URL.Query().Get("deviceId")})
		watchClose(session, out)
		select {
		case sessions <- session:
			taps <- conn.tap
		default:
			session.Close() // this peer drives one device at a time
		}
	})
	go http.Serve(listener, handler)
	out.emit(map[string]any{"event": "listening", "port": listener.Addr().(*net.TCPAddr).Port})

	var session *yamux.Session
	var frames *tap
	return readCommands(out, func(cmd string, args []string) (map[string]any, error) {
		if session == nil {
			select {
			case session = <-sessions:
				frames = <-taps
			case <-time.After(opTimeout):
				return nil, errors.New("no device connected")
			}
		}
		switch cmd {
		case "echo":
			return echoCommand(session, args)
		case "ack":
			return ackCommand(session, frames)
		case "hold":
			stream, err := session.OpenStream()
			if err != nil {
				return nil, err
			}
			_, err = stream.Write([]byte("hold\n"))
			return map[string]any{"stream": stream.StreamID()}, err
		}
		return sessionCommand(session, cmd)
	})
}

// runDevice is the Go wslis client: dial, then echo every stream the server opens.
func runDevice(out *output, url string) error {
	if url == "" {
		return errors.New("-url is required in device mode")
	}
	ws, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		return err
	}
	session, err := yamux.Server(newWSConn(ws, out), yamuxConfig())
	if err != nil {
		return err
	}
	out.emit(map[string]any{"event": "connected"})
	watchClose(session, out)
	go func() {
		for {
			stream, err := session.AcceptStream()
			if err != nil {
				return // the session ended; watchClose reports it
			}
			go echo(stream, out)
		}
	}()
	return readCommands(out, func(cmd string, _ []string) (map[string]any, error) {
		return sessionCommand(session, cmd)
	})
}

// echo copies a stream back to itself until the peer's FIN, hashing what it echoed, then closes.
func echo(stream *yamux.Stream, out *output) {
	stream.SetDeadline(time.Now().Add(opTimeout))
	hasher := sha256.New()
	n, err := io.Copy(stream, io.TeeReader(stream, hasher))
	stream.Close()
	event := map[string]any{"event": "echoed", "stream": stream.StreamID(), "bytes": n, "sha256": hex.EncodeToString(hasher.Sum(nil))}
	if err != nil {
		event["error"] = err.Error()
	}
	out.emit(event)
}

func watchClose(session *yamux.Session, out *output) {
	go func() {
		<-session.CloseChan()
		out.emit(map[string]any{"event": "closed"})
	}()
}

// readCommands runs one command per stdin line, in order, and answers each with a reply line.
func readCommands(out *output, run func(cmd string, args []string) (map[string]any, error)) error {
	lines := bufio.NewScanner(os.Stdin)
	for lines.Scan() {
		words := strings.Fields(lines.Text())
		if len(words) == 0 {
			continue
		}
		reply, err := run(words[0], words[1:])
		if reply == nil {
			reply = map[string]any{}
		}
		reply["event"] = "reply"
		reply["cmd"] = words[0]
		if err != nil {
			reply["error"] = err.Error()
		}
		out.emit(reply)
	}
	return lines.Err()
}

// sessionCommand runs the commands both roles share.
func sessionCommand(session *yamux.Session, cmd string) (map[string]any, error) {
	switch cmd {
	case "ping":
		rtt, err := session.Ping()
		return map[string]any{"rttMicros": rtt.Microseconds()}, err
	case "goaway":
		return nil, session.GoAway()
	case "close":
		return nil, session.Close()
	}
	return nil, fmt.Errorf("unknown command %q", cmd)
}

type echoResult struct {
	Stream   uint32 `json:"stream"`
	Bytes    int64  `json:"bytes"`
	Sent     string `json:"sent"`
	Received string `json:"received"`
	Error    string `json:"error,omitempty"`
}

// echoCommand opens COUNT streams at once and round-trips SIZE bytes on each.
func echoCommand(session *yamux.Session, args []string) (map[string]any, error) {
	if len(args) != 2 {
		return nil, errors.New("usage: echo SIZE COUNT")
	}
	size, err1 := strconv.ParseInt(args[0], 10, 64)
	count, err2 := strconv.Atoi(args[1])
	if err1 != nil || err2 != nil || size < 0 || count <= 0 {
		return nil, errors.New("echo: SIZE and COUNT must be non-negative integers")
	}
	start := time.Now()
	results := make([]echoResult, count)
	var wg sync.WaitGroup
	for i := range results {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			results[i] = roundTrip(session, size, int64(i+1))
		}(i)
	}
	wg.Wait()
	for _, r := range results {
		if r.Error != "" {
			return map[string]any{"streams": results}, fmt.Errorf("stream %d: %s", r.Stream, r.Error)
		}
	}
	return map[string]any{"streams": results, "micros": time.Since(start).Microseconds()}, nil
}

// roundTrip sends size bytes on a new stream and reads the echo back.
//
// Debian's yamux (2019) returns io.EOF from Read as soon as the local side has closed and the receive
// buffer happens to be empty, even though the peer has not sent its FIN and more echo is on the way.
// So this side must not Close (send FIN) and then read: the echo is read in a goroutine while writing,
// exactly size bytes (the length is known), and the stream is closed only once all of it has arrived.
// The peer's echo (a pipe) sends its FIN after ours; nothing here waits for it.
func roundTrip(session *yamux.Session, size int64, seed int64) echoResult {
	stream, err := session.OpenStream()
	if err != nil {
		return echoResult{Error: err.Error()}
	}
	defer stream.Close()
	stream.SetDeadline(time.Now().Add(opTimeout))
	result := echoResult{Stream: stream.StreamID()}

	type readResult struct {
		n   int64
		sum []byte
		err error
	}
	received := make(chan readResult, 1)
	go func() {
		hasher := sha256.New()
		n, err := io.CopyN(hasher, stream, size)
		received <- readResult{n, hasher.Sum(nil), err}
	}()

	sent, err := writeRandom(stream, size, seed)
	if err != nil {
		result.Error = "write: " + err.Error()
		return result
	}
	got := <-received
	result.Bytes = got.n
	result.Sent = hex.EncodeToString(sent)
	result.Received = hex.EncodeToString(got.sum)
	if got.err != nil {
		result.Error = fmt.Sprintf("read after %d of %d bytes: %v", got.n, size, got.err)
	}
	return result
}

// writeRandom writes size pseudo-random bytes (math/rand from seed: fast, and different per stream)
// in chunks, and returns their SHA-256.
func writeRandom(w io.Writer, size int64, seed int64) ([]byte, error) {
	source := rand.New(rand.NewSource(seed))
	hasher := sha256.New()
	chunk := make([]byte, writeChunkSize)
	for left := size; left > 0; {
		n := int64(len(chunk))
		if left < n {
			n = left
		}
		source.Read(chunk[:n])
		hasher.Write(chunk[:n])
		if _, err := w.Write(chunk[:n]); err != nil {
			return nil, err
		}
		left -= n
	}
	return hasher.Sum(nil), nil
}

// ackCommand opens a stream, writes nothing, and reports the first frame the peer sends on it. A
// conforming peer answers the SYN with a WindowUpdate carrying ACK at once, before any data: newer
// hashicorp/yamux closes the whole session when an ACK is late (StreamOpenTimeout).
func ackCommand(session *yamux.Session, frames *tap) (map[string]any, error) {
	stream, err := session.OpenStream()
	if err != nil {
		return nil, err
	}
	defer stream.Close()
	first, ok := frames.firstFrame(stream.StreamID(), 5*time.Second)
	if !ok {
		return map[string]any{"stream": stream.StreamID()}, errors.New("no frame arrived on the stream within 5 s")
	}
	return map[string]any{
		"stream": stream.StreamID(),
		"type":   first.typ,
		"flags":  first.flags,
		"length": first.length,
		"ack":    first.flags&flagACK != 0,
	}, nil
}

// wsConn is Go wslis's adapter from a WebSocket to the byte stream yamux wants: every Write is one
// binary message (yamux writes a frame's header and its body separately, so they travel as two
// messages), and Read runs across message boundaries.
type wsConn struct {
	ws     *websocket.Conn
	reader io.Reader // the message being read, or nil
	tap    *tap
}

func newWSConn(ws *websocket.Conn, out *output) *wsConn {
	return &wsConn{ws: ws, tap: &tap{out: out, first: map[uint32]frameInfo{}}}
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
			err = nil
			if n == 0 {
				continue
			}
		}
		c.tap.feed(p[:n])
		return n, err
	}
}

// Write needs no lock: yamux's send loop is the only writer.
func (c *wsConn) Write(p []byte) (int, error) {
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *wsConn) Close() error {
	return c.ws.Close()
}

type frameInfo struct {
	typ, flags uint16
	length     uint32
}

// tap follows the frames the peer sends, independently of yamux, so the tests can check wire details
// yamux does not expose: the first frame on each stream (is our ACK immediate?) and GoAway.
type tap struct {
	out    *output
	mu     sync.Mutex
	header []byte
	skip   uint32 // Data body bytes still to pass over
	first  map[uint32]frameInfo
}

func (t *tap) feed(p []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for len(p) > 0 {
		if t.skip > 0 {
			n := uint32(len(p))
			if n > t.skip {
				n = t.skip
			}
			t.skip -= n
			p = p[n:]
			continue
		}
		need := headerSize - len(t.header)
		if need > len(p) {
			need = len(p)
		}
		t.header = append(t.header, p[:need]...)
		p = p[need:]
		if len(t.header) < headerSize {
			return
		}
		frame := frameInfo{
			typ:    uint16(t.header[1]),
			flags:  binary.BigEndian.Uint16(t.header[2:4]),
			length: binary.BigEndian.Uint32(t.header[8:12]),
		}
		streamID := binary.BigEndian.Uint32(t.header[4:8])
		t.header = t.header[:0]
		if frame.typ == typeData {
			t.skip = frame.length
		}
		if frame.typ == typeGoAway {
			t.out.emit(map[string]any{"event": "goaway", "code": frame.length})
		}
		if _, seen := t.first[streamID]; !seen && streamID != 0 {
			t.first[streamID] = frame
		}
	}
}

// firstFrame waits up to timeout for the first frame on streamID. It polls: the ACK may well have
// arrived before the caller asks, and a 1 ms poll keeps this simple.
func (t *tap) firstFrame(streamID uint32, timeout time.Duration) (frameInfo, bool) {
	deadline := time.Now().Add(timeout)
	for {
		t.mu.Lock()
		frame, ok := t.first[streamID]
		t.mu.Unlock()
		if ok || time.Now().After(deadline) {
			return frame, ok
		}
		time.Sleep(time.Millisecond)
	}
}
