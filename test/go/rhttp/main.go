// Command rhttp is the Go side of the reverse-HTTP interop test (test/interop-http-go.test.ts): net/http
// over hashicorp/yamux (Debian's, 2019) over gorilla/websocket, the way Go wslis's rhttp does it.
//
//	rhttp -mode client               Listens on 127.0.0.1:0 as a wslis server: upgrades, runs yamux.Client,
//	                                 and drives the device with an http.Client whose DialContext opens a
//	                                 stream. Runs its checks, prints one JSON line of results, exits.
//	rhttp -mode device -url ws://…   Dials as a device: yamux.Server, then http.Serve(session, handlers).
//	rhttp -mode bench-client         Like client, but runs the measurements bench/http.ts asks on stdin.
//
// Lines on stdout are JSON: {"event":"listening","port":…}, {"event":"result",…}, {"event":"serving"}.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/hashicorp/yamux"
)

// wsConn is a WebSocket as the byte stream yamux runs on: binary messages in, any boundaries.
type wsConn struct {
	ws      *websocket.Conn
	reader  io.Reader
	writeMu sync.Mutex
}

func (c *wsConn) Read(p []byte) (int, error) {
	for {
		if c.reader == nil {
			_, r, err := c.ws.NextReader()
			if err != nil {
				return 0, err
			}
			c.reader = r
		}
		n, err := c.reader.Read(p)
		if err == io.EOF {
			c.reader = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}

func (c *wsConn) Write(p []byte) (int, error) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *wsConn) Close() error { return c.ws.Close() }

func emit(v map[string]interface{}) {
	line, _ := json.Marshal(v)
	fmt.Println(string(line))
}

func fail(format string, args ...interface{}) {
	emit(map[string]interface{}{"event": "error", "error": fmt.Sprintf(format, args...)})
	os.Exit(1)
}

func main() {
	mode := flag.String("mode", "", "client or device")
	url := flag.String("url", "", "ws:// URL of the wslis server (device mode)")
	lifetime := flag.Duration("lifetime", 60*time.Second, "exit with an error after this long")
	flag.Parse()
	// Never outlive a wedged test.
	time.AfterFunc(*lifetime, func() { fail("timed out after %v", *lifetime) })
	switch *mode {
	case "client":
		runClient()
	case "device":
		runDevice(*url)
	case "bench-client":
		runBenchClient()
	default:
		fail("unknown mode %q", *mode)
	}
}

// runClient is the wslis server with Go's http.Client going through the device.
func runClient() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail("listen: %v", err)
	}
	sessions := make(chan *yamux.Session, 1)
	upgrader := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		session, err := yamux.Client(&wsConn{ws: ws}, nil)
		if err != nil {
			fail("yamux client: %v", err)
		}
		sessions <- session
	}))
	emit(map[string]interface{}{"event": "listening", "port": ln.Addr().(*net.TCPAddr).Port})
	session := <-sessions

	client := &http.Client{
		Timeout: 20 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return session.Open()
			},
			MaxIdleConns:          100,
			IdleConnTimeout:       90 * time.Second,
			ExpectContinueTimeout: 1 * time.Second,
		},
	}
	result := map[string]interface{}{"event": "result"}

	// GET
	res, err := client.Get("http://device.local/hello?x=1")
	if err != nil {
		fail("GET: %v", err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	result["getStatus"] = res.StatusCode
	result["getBody"] = string(body)
	result["getContentLength"] = res.ContentLength

	// POST 1 MiB, echoed back; the device streams it (chunked).
	data := make([]byte, 1<<20)
	rand.New(rand.NewSource(7)).Read(data)
	sent := sha256.Sum256(data)
	res, err = client.Post("http://device.local/echo", "application/octet-stream", bytes.NewReader(data))
	if err != nil {
		fail("POST: %v", err)
	}
	echoed, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		fail("POST body: %v", err)
	}
	got := sha256.Sum256(echoed)
	result["postSent"] = hex.EncodeToString(sent[:])
	result["postEchoed"] = hex.EncodeToString(got[:])
	result["postTransferEncoding"] = res.TransferEncoding

	// Keep-alive: sequential requests reuse the idle connection (one stream).
	var reused, fresh int32
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		if info.Reused {
			atomic.AddInt32(&reused, 1)
		} else {
			atomic.AddInt32(&fresh, 1)
		}
	}}
	for i := 0; i < 10; i++ {
		req, _ := http.NewRequest("GET", fmt.Sprintf("http://device.local/n/%d", i), nil)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
		res, err := client.Do(req)
		if err != nil {
			fail("keep-alive GET %d: %v", i, err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
	result["reused"] = reused
	result["fresh"] = fresh

	// A handler failure is a clean 500.
	res, err = client.Get("http://device.local/throw")
	if err != nil {
		fail("GET /throw: %v", err)
	}
	body, _ = io.ReadAll(res.Body)
	res.Body.Close()
	result["throwStatus"] = res.StatusCode
	result["throwBody"] = string(body)

	emit(result)
	session.Close()
}

// runBenchClient is the wslis server side of bench/http.ts: it waits for one device, then runs the
// measurements asked on stdin (one JSON object a line) with an http.Client whose DialContext opens a
// stream, and answers each with one JSON line:
//
//	{"op":"latency","n":N}        N sequential GET /1k: {"event":"latency","p50":µs,"p99":µs}
//	{"op":"rate","n":N,"c":C}     N GET /1k by C workers: {"event":"rate","rps":requests per second}
//	{"op":"post","n":N}           N sequential 1 MiB POST /echo: {"event":"post","ms":median ms}
func runBenchClient() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail("listen: %v", err)
	}
	sessions := make(chan *yamux.Session, 1)
	upgrader := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		session, err := yamux.Client(&wsConn{ws: ws}, nil)
		if err != nil {
			fail("yamux client: %v", err)
		}
		sessions <- session
	}))
	emit(map[string]interface{}{"event": "listening", "port": ln.Addr().(*net.TCPAddr).Port})
	session := <-sessions
	client := &http.Client{
		Timeout: 60 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return session.Open()
			},
			MaxIdleConns:        1000,
			MaxIdleConnsPerHost: 1000,
			IdleConnTimeout:     90 * time.Second,
		},
	}
	get := func() {
		res, err := client.Get("http://device.local/1k")
		if err != nil {
			fail("GET: %v", err)
		}
		n, _ := io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if n != 1000 {
			fail("GET /1k: %d bytes", n)
		}
	}
	data := make([]byte, 1<<20)
	rand.New(rand.NewSource(7)).Read(data)
	emit(map[string]interface{}{"event": "ready"})
	scanner := bufio.NewScanner(os.Stdin)
	for scanner.Scan() {
		var cmd struct {
			Op string `json:"op"`
			N  int    `json:"n"`
			C  int    `json:"c"`
		}
		if err := json.Unmarshal(scanner.Bytes(), &cmd); err != nil {
			fail("command: %v", err)
		}
		switch cmd.Op {
		case "latency":
			times := make([]float64, cmd.N)
			for i := range times {
				t0 := time.Now()
				get()
				times[i] = float64(time.Since(t0).Nanoseconds()) / 1000
			}
			sort.Float64s(times)
			emit(map[string]interface{}{"event": "latency", "p50": times[cmd.N/2], "p99": times[cmd.N*99/100]})
		case "rate":
			var left int64 = int64(cmd.N)
			var wg sync.WaitGroup
			t0 := time.Now()
			for w := 0; w < cmd.C; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for atomic.AddInt64(&left, -1) >= 0 {
						get()
					}
				}()
			}
			wg.Wait()
			emit(map[string]interface{}{"event": "rate", "rps": float64(cmd.N) / time.Since(t0).Seconds()})
		case "post":
			times := make([]float64, cmd.N)
			for i := range times {
				t0 := time.Now()
				res, err := client.Post("http://device.local/echo", "application/octet-stream", bytes.NewReader(data))
				if err != nil {
					fail("POST: %v", err)
				}
				n, _ := io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if n != int64(len(data)) {
					fail("POST /echo: %d bytes back", n)
				}
				times[i] = float64(time.Since(t0).Nanoseconds()) / 1e6
			}
			sort.Float64s(times)
			emit(map[string]interface{}{"event": "post", "ms": times[cmd.N/2]})
		default:
			fail("unknown op %q", cmd.Op)
		}
	}
	session.Close()
}

// runDevice is a Go device serving net/http handlers on the streams the server opens.
func runDevice(url string) {
	ws, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		fail("dial: %v", err)
	}
	session, err := yamux.Server(&wsConn{ws: ws}, nil)
	if err != nil {
		fail("yamux server: %v", err)
	}
	var conns int32
	mux := http.NewServeMux()
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from go, host=%s path=%s", r.Host, r.URL.Path)
	})
	oneK := bytes.Repeat([]byte("a"), 1000)
	mux.HandleFunc("/1k", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write(oneK)
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		io.Copy(w, r.Body)
	})
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		flusher := w.(http.Flusher)
		for i := 1; i <= 3; i++ {
			fmt.Fprintf(w, "tick%d;", i)
			flusher.Flush()
			time.Sleep(20 * time.Millisecond)
		}
	})
	mux.HandleFunc("/conns", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%d", atomic.LoadInt32(&conns))
	})
	server := &http.Server{
		Handler: mux,
		ConnState: func(_ net.Conn, state http.ConnState) {
			if state == http.StateNew {
				atomic.AddInt32(&conns, 1)
			}
		},
	}
	emit(map[string]interface{}{"event": "serving"})
	server.Serve(session)
	// The server closed the session: done.
}
