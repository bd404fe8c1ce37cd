# The demo image: a FROM scratch image with two static binaries, built without any
# registry. Build it with scripts/build-image.sh, which compiles the binaries
# (static glibc, `-C target-feature=+crt-static`) and runs `docker build` on a context
# holding only them:
#   scripts/build-image.sh            # -> autoscaler-demo:latest
# ENTRYPOINT is the demo backend; the operator runs with
#   docker run --entrypoint /autoscaler -v /var/run/docker.sock:/var/run/docker.sock ...
FROM scratch
COPY demo-backend /demo-backend
COPY autoscaler /autoscaler
EXPOSE 8000
# The backend handles SIGTERM itself (PID 1 has no default handler): it stops
# accepting, finishes in-flight requests and exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/demo-backend"]
CMD ["--port", "8000"]
