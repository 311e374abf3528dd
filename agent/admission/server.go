package admission

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	admissionv1 "k8s.io/api/admission/v1"
)

// MaxReviewSize bounds an AdmissionReview body: an update carries the
// object twice, each at most the API server's 3 MiB request limit.
const MaxReviewSize = 6 << 20

// Server serves the handlers over HTTPS: /mutate, /validate, and
// /healthz, /readyz and /metrics.
type Server struct {
	Handler *Handler
	// TLS is the serving configuration, with a certificate or a
	// GetCertificate (the certificate manager's).
	TLS *tls.Config
	Log *slog.Logger

	// Registry holds the admission metrics (NewServer).
	Registry *prometheus.Registry
	latency  *prometheus.HistogramVec
}

// NewServer returns a Server with its metrics registered.
func NewServer(h *Handler, tlsConfig *tls.Config, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{Handler: h, TLS: tlsConfig, Log: log, Registry: prometheus.NewRegistry(),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "plexus_admission_duration_seconds",
			Help:    "Admission requests answered, by kind and verdict (allowed, patched, denied, error).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"kind", "verdict"}),
	}
	s.Registry.MustRegister(s.latency, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return s
}

// Serve serves on l until ctx ends, then shuts down gracefully (requests
// in flight end within their look-up timeout).
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	mux := http.NewServeMux()
	mux.Handle("POST /mutate", s.review(s.Handler.Mutate))
	mux.Handle("POST /validate", s.review(s.Handler.Validate))
	ok := func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") }
	mux.HandleFunc("/healthz", ok)
	// Ready once serving: every answer comes from the request alone or
	// from bounded look-ups, so there is nothing to wait for.
	mux.HandleFunc("/readyz", ok)
	mux.Handle("/metrics", promhttp.HandlerFor(s.Registry, promhttp.HandlerOpts{Registry: s.Registry}))
	srv := &http.Server{
		Handler: mux, TLSConfig: s.TLS,
		ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 15 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 90 * time.Second,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(s.Log.Handler(), slog.LevelWarn),
		BaseContext:    func(net.Listener) context.Context { return ctx },
	}
	done := make(chan error, 1)
	go func() { done <- srv.ServeTLS(l, "", "") }()
	select {
	case err := <-done:
		return fmt.Errorf("webhook server: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := srv.Shutdown(shutdownCtx)
	if serveErr := <-done; !errors.Is(serveErr, http.ErrServerClosed) {
		err = errors.Join(err, serveErr)
	}
	return err
}

// review decodes an AdmissionReview, answers it with answer and records
// the latency. A body that is too large or not an AdmissionReview gets a
// 4xx with the reason (the API server applies the failure policy); a
// panicking handler, a 500: the server goes on serving the others.
func (s *Server) review(answer func(context.Context, *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		kind, verdict := "unknown", "error"
		defer func() {
			if p := recover(); p != nil {
				s.Log.Error("admission handler panicked", "panic", p)
				http.Error(w, "internal error", http.StatusInternalServerError)
			}
			s.latency.WithLabelValues(kind, verdict).Observe(time.Since(start).Seconds())
		}()
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxReviewSize))
		if err != nil {
			code := http.StatusBadRequest
			if errors.As(err, new(*http.MaxBytesError)) {
				code = http.StatusRequestEntityTooLarge
			}
			http.Error(w, "read AdmissionReview: "+err.Error(), code)
			return
		}
		var review admissionv1.AdmissionReview
		if err := json.Unmarshal(body, &review); err != nil || review.Request == nil {
			if err == nil {
				err = errors.New("no request")
			}
			http.Error(w, "decode AdmissionReview: "+err.Error(), http.StatusBadRequest)
			return
		}
		req := review.Request
		kind = req.Kind.Kind
		resp := answer(r.Context(), req)
		resp.UID = req.UID
		verdict = verdictOf(resp)
		review.Request, review.Response = nil, resp
		if review.APIVersion == "" {
			review.APIVersion, review.Kind = "admission.k8s.io/v1", "AdmissionReview"
		}
		w.Header().Set("Content-Type", "application/json")
		if err := json.NewEncoder(w).Encode(&review); err != nil {
			s.Log.Warn("write AdmissionReview", "err", err)
		}
		if !resp.Allowed {
			s.Log.Info("admission refused", "kind", kind, "namespace", req.Namespace, "name", req.Name, "operation", req.Operation, "reason", resp.Result.Message)
		}
	})
}

func verdictOf(r *admissionv1.AdmissionResponse) string {
	switch {
	case r.Allowed && len(r.Patch) > 0:
		return "patched"
	case r.Allowed:
		return "allowed"
	case r.Result != nil && r.Result.Code >= 500:
		return "error"
	}
	return "denied"
}
