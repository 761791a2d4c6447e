//! One function run as Lambda runs it: its built binary in a process of its own (an execution
//! environment), talking to an embedded Lambda Runtime API on loopback. An environment takes one
//! invocation at a time; a function keeps up to its concurrency limit of them warm.
//!
//! As in Lambda: the process starts with only the environment it is given (no inherited variables),
//! its init phase ends at its first `GET /runtime/invocation/next`, an invocation that outlives the
//! function's timeout kills the process, and so does a crash; the next invocation then pays a new cold
//! start.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    path::PathBuf,
    process::Stdio,
    sync::{
        Arc, Mutex as StdMutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    sync::{Mutex, Semaphore, mpsc, oneshot, watch},
};

/// Lambda gives the init phase 10 s (on top of the function's timeout, which is for invocations).
pub const INIT_TIMEOUT: Duration = Duration::from_secs(10);
const LOG_TAIL_LINES: usize = 40;

/// Why an invocation did not return a response.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FunctionError {
    /// The process could not start, exited, or reported `/runtime/init/error` before its first `next`.
    #[error("{function}: init failed ({kind}): {message}\n--- last output ---\n{log_tail}")]
    Init { function: String, kind: String, message: String, log_tail: String },
    /// The handler returned an error (`/runtime/invocation/{id}/error`); the environment stays warm.
    #[error("{function}: {error_type}: {error_message}")]
    Handled { function: String, error_type: String, error_message: String },
    /// The invocation outlived the function's timeout: the process was killed.
    #[error("{function}: Task timed out after {seconds:.2} seconds")]
    Timeout { function: String, seconds: f64 },
    /// The process exited during the invocation.
    #[error(
        "{function}: Runtime.ExitError: the process exited ({status}) during the invocation\n--- last output ---\n{log_tail}"
    )]
    Crashed { function: String, status: String, log_tail: String },
    /// The runtime itself failed (cannot bind, cannot spawn).
    #[error("{function}: {message}")]
    Runtime { function: String, message: String },
}

/// Where a function's stdout and stderr go (what Lambda ships to CloudWatch Logs).
#[derive(Debug, Clone)]
pub enum LogSink {
    /// Kept only as the last lines shown with an error.
    Discard,
    /// Appended to this file, one line per line.
    File(PathBuf),
    /// Written to this process's stderr, prefixed with the function's logical id.
    Stderr,
}

/// Everything needed to start one function's environments.
#[derive(Debug, Clone)]
pub struct FunctionConfig {
    pub logical_id: String,
    /// The deployed name (`AWS_LAMBDA_FUNCTION_NAME`).
    pub name: String,
    pub arn: String,
    pub binary: PathBuf,
    pub timeout: Duration,
    pub memory_mb: u32,
    pub handler: String,
    /// The process's whole environment: the template's variables resolved, plus the reserved ones
    /// the runtime adds (see [`crate::Runtime::function_config`]). `AWS_LAMBDA_RUNTIME_API` is added
    /// per environment.
    pub env: BTreeMap<String, String>,
    /// Execution environments at most (the mapping's MaximumConcurrency, or a local default).
    pub max_concurrency: usize,
    pub logs: LogSink,
}

/// Counters of one function, for reports and tests.
#[derive(Debug, Default)]
pub struct Stats {
    pub cold_starts: AtomicU64,
    pub invocations: AtomicU64,
    pub errors: AtomicU64,
    pub timeouts: AtomicU64,
    /// Each environment's init phase: from the process's spawn to its first `GET next`.
    pub inits: StdMutex<Vec<Duration>>,
    /// The largest resident set any environment reached (Linux `VmHWM`, KiB; 0 where unknown),
    /// read after each invocation.
    pub peak_rss_kib: AtomicU64,
    /// Billed duration as Lambda bills an OS-only runtime: each invocation rounded up to the
    /// millisecond, plus each environment's init phase.
    pub billed_ms: AtomicU64,
}

impl Stats {
    /// The init phases measured so far, shortest first.
    pub fn init_times(&self) -> Vec<Duration> {
        let mut inits = self.inits.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        inits.sort();
        inits
    }

    fn started(&self, env: &Environment) {
        self.cold_starts.fetch_add(1, Ordering::Relaxed);
        self.inits.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(env.init);
        self.billed_ms.fetch_add(billed_ms(env.init), Ordering::Relaxed);
        self.peak_rss_kib.fetch_max(env.peak_rss_kib(), Ordering::Relaxed);
    }
}

/// A duration in whole milliseconds, rounded up (Lambda's billing granularity).
fn billed_ms(d: Duration) -> u64 {
    u64::try_from(d.as_micros().div_ceil(1000)).unwrap_or(u64::MAX)
}

/// A function with its pool of warm environments.
#[derive(Debug)]
pub struct Function {
    pub config: FunctionConfig,
    pub stats: Stats,
    idle: StdMutex<Vec<Environment>>,
    slots: Semaphore,
}

impl Function {
    pub fn new(config: FunctionConfig) -> Self {
        let slots = Semaphore::new(config.max_concurrency.max(1));
        Self { config, stats: Stats::default(), idle: StdMutex::default(), slots }
    }

    /// Starts one environment and waits for its first `GET /runtime/invocation/next` (the end of its
    /// init phase), then keeps it warm for the next invocation.
    pub async fn start(&self) -> Result<(), FunctionError> {
        let _slot = self.slots.acquire().await.map_err(|e| self.runtime_error(e))?;
        let env = Environment::start(&self.config).await?;
        self.stats.started(&env);
        self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(env);
        Ok(())
    }

    /// Invokes the function with `payload` and returns its response, as `Invoke` (RequestResponse) does.
    pub async fn invoke(&self, payload: &Value) -> Result<Value, FunctionError> {
        let _slot = self.slots.acquire().await.map_err(|e| self.runtime_error(e))?;
        let warm = {
            let mut idle = self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            idle.retain(Environment::alive);
            idle.pop()
        };
        let env = if let Some(env) = warm {
            env
        } else {
            let env = Environment::start(&self.config).await?;
            self.stats.started(&env);
            env
        };
        self.stats.invocations.fetch_add(1, Ordering::Relaxed);
        let began = std::time::Instant::now();
        let result = env.invoke(&self.config, payload).await;
        self.stats.billed_ms.fetch_add(billed_ms(began.elapsed()), Ordering::Relaxed);
        self.stats.peak_rss_kib.fetch_max(env.peak_rss_kib(), Ordering::Relaxed);
        match &result {
            Err(FunctionError::Timeout { .. }) => {
                self.stats.timeouts.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => {}
        }
        if env.alive() {
            self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(env);
        }
        result
    }

    /// Warm environments right now.
    pub fn warm(&self) -> usize {
        let mut idle = self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        idle.retain(Environment::alive);
        idle.len()
    }

    /// Stops every idle environment (an environment busy in an invocation stops when it returns and is dropped).
    pub fn shutdown(&self) {
        self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
    }

    fn runtime_error(&self, e: impl std::fmt::Display) -> FunctionError {
        FunctionError::Runtime { function: self.config.logical_id.clone(), message: e.to_string() }
    }
}

/// One invocation handed to an environment.
#[derive(Debug)]
struct Invocation {
    request_id: String,
    payload: Bytes,
    deadline_ms: i64,
    trace_id: String,
    reply: oneshot::Sender<Reply>,
}

#[derive(Debug)]
enum Reply {
    Response(Bytes),
    Error { error_type: String, error_message: String },
}

/// The Runtime API's state for one environment.
struct Api {
    function_arn: String,
    invocations: Mutex<mpsc::Receiver<Invocation>>,
    in_flight: StdMutex<HashMap<String, oneshot::Sender<Reply>>>,
    /// Set at the first `GET next`: the init phase is over.
    ready: watch::Sender<bool>,
    init_error: StdMutex<Option<(String, String)>>,
}

/// One execution environment: a process and its Runtime API.
struct Environment {
    id: u64,
    sender: mpsc::Sender<Invocation>,
    /// `Some(status)` once the process has exited.
    exited: watch::Receiver<Option<String>>,
    kill: StdMutex<Option<oneshot::Sender<()>>>,
    log_tail: Arc<StdMutex<VecDeque<String>>>,
    server: tokio::task::JoinHandle<()>,
    /// The process id, and how long its init phase took.
    pid: Option<u32>,
    init: Duration,
}

impl std::fmt::Debug for Environment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Environment").field("id", &self.id).finish_non_exhaustive()
    }
}

impl Drop for Environment {
    fn drop(&mut self) {
        self.stop();
        self.server.abort();
    }
}

static ENVIRONMENTS: AtomicU64 = AtomicU64::new(1);

impl Environment {
    /// Starts the process and waits until it asks for its first invocation.
    async fn start(config: &FunctionConfig) -> Result<Self, FunctionError> {
        let function = config.logical_id.clone();
        let init_failed = |kind: &str, message: String, tail: &StdMutex<VecDeque<String>>| FunctionError::Init {
            function: function.clone(),
            kind: kind.to_owned(),
            message,
            log_tail: tail_text(tail),
        };
        let id = ENVIRONMENTS.fetch_add(1, Ordering::Relaxed);
        let log_tail = Arc::new(StdMutex::new(VecDeque::new()));
        if !config.binary.is_file() {
            return Err(init_failed(
                "Runtime.InvalidEntrypoint",
                format!(
                    "{} does not exist: build the functions first (`cargo build --workspace --bins`)",
                    config.binary.display()
                ),
                &log_tail,
            ));
        }

        let (sender, receiver) = mpsc::channel(1);
        let (ready, mut ready_rx) = watch::channel(false);
        let api = Arc::new(Api {
            function_arn: config.arn.clone(),
            invocations: Mutex::new(receiver),
            in_flight: StdMutex::default(),
            ready,
            init_error: StdMutex::default(),
        });
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| init_failed("Runtime.Unknown", format!("cannot bind the Runtime API: {e}"), &log_tail))?;
        let addr = listener.local_addr().map_err(|e| init_failed("Runtime.Unknown", e.to_string(), &log_tail))?;
        let router = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route("/2018-06-01/runtime/invocation/{id}/response", post(response))
            .route("/2018-06-01/runtime/invocation/{id}/error", post(invocation_error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(api.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });

        // Lambda's task root: an empty working directory of its own (nothing ships next to the binary).
        let task_root = std::env::temp_dir().join(format!("manifold-localrt-{}-{id}", std::process::id()));
        let _ = std::fs::create_dir_all(&task_root);
        let mut command = tokio::process::Command::new(&config.binary);
        command
            .env_clear()
            .envs(&config.env)
            .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
            .env("LAMBDA_TASK_ROOT", &task_root)
            .current_dir(&task_root)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let spawned = std::time::Instant::now();
        let mut child = command.spawn().map_err(|e| {
            init_failed(
                "Runtime.InvalidEntrypoint",
                format!("cannot start {}: {e}", config.binary.display()),
                &log_tail,
            )
        })?;
        let sink = Arc::new(LogWriter::open(&config.logs, &config.logical_id).await);
        if let Some(out) = child.stdout.take() {
            tokio::spawn(pump(out, sink.clone(), log_tail.clone()));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(pump(err, sink, log_tail.clone()));
        }
        let pid = child.id();
        let (exited_tx, exited) = watch::channel(None);
        let (kill, kill_rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let status = tokio::select! {
                status = child.wait() => status,
                _ = kill_rx => {
                    let _ = child.start_kill();
                    child.wait().await
                }
            };
            let _ = exited_tx.send(Some(status.map_or_else(|e| e.to_string(), |s| s.to_string())));
            let _ = std::fs::remove_dir_all(&task_root);
        });

        let mut env =
            Self { id, sender, exited, kill: StdMutex::new(Some(kill)), log_tail, server, pid, init: Duration::ZERO };
        let mut exited = env.exited.clone();
        let outcome = tokio::time::timeout(INIT_TIMEOUT, async {
            tokio::select! {
                r = async { ready_rx.wait_for(|r| *r).await.is_ok() } => r,
                () = async { let _ = exited.wait_for(Option::is_some).await; } => false,
            }
        })
        .await;
        let reported = api.init_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        match (outcome, reported) {
            (_, Some((kind, message))) => Err(init_failed(&kind, message, &env.log_tail)),
            (Ok(true), None) => {
                env.init = spawned.elapsed();
                Ok(env)
            }
            (Ok(false), None) => {
                // Give the log pumps a moment to read the last lines the process wrote.
                tokio::time::sleep(Duration::from_millis(100)).await;
                let status = env.exited.borrow().clone().unwrap_or_default();
                Err(init_failed(
                    "Runtime.ExitError",
                    format!("the process exited before its first `next` ({status})"),
                    &env.log_tail,
                ))
            }
            (Err(_), None) => {
                env.stop();
                Err(init_failed("Sandbox.Timedout", format!("no `next` within {INIT_TIMEOUT:?}"), &env.log_tail))
            }
        }
    }

    /// The process's peak resident set so far (`VmHWM` in `/proc/{pid}/status`, KiB; 0 where that
    /// is not readable, as off Linux).
    fn peak_rss_kib(&self) -> u64 {
        let Some(pid) = self.pid else { return 0 };
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { return 0 };
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    fn alive(&self) -> bool {
        self.exited.borrow().is_none()
    }

    fn stop(&self) {
        if let Some(kill) = self.kill.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
            let _ = kill.send(());
        }
    }

    async fn invoke(&self, config: &FunctionConfig, payload: &Value) -> Result<Value, FunctionError> {
        let function = config.logical_id.clone();
        let (reply, answer) = oneshot::channel();
        let deadline_ms =
            chrono::Utc::now().timestamp_millis() + i64::try_from(config.timeout.as_millis()).unwrap_or(i64::MAX / 2);
        let invocation = Invocation {
            request_id: uuid::Uuid::new_v4().to_string(),
            payload: Bytes::from(payload.to_string()),
            deadline_ms,
            trace_id: format!(
                "Root=1-{:08x}-{};Parent={};Sampled=0",
                chrono::Utc::now().timestamp(),
                &uuid::Uuid::new_v4().simple().to_string()[..24],
                &uuid::Uuid::new_v4().simple().to_string()[..16]
            ),
            reply,
        };
        let mut exited = self.exited.clone();
        let crashed = |status: String| FunctionError::Crashed {
            function: function.clone(),
            status,
            log_tail: tail_text(&self.log_tail),
        };
        if self.sender.send(invocation).await.is_err() {
            return Err(crashed("the environment is gone".into()));
        }
        tokio::select! {
            answer = answer => match answer {
                Ok(Reply::Response(body)) => {
                    Ok(serde_json::from_slice(&body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned())))
                }
                Ok(Reply::Error { error_type, error_message }) => {
                    Err(FunctionError::Handled { function, error_type, error_message })
                }
                Err(_) => Err(crashed("the Runtime API dropped the invocation".into())),
            },
            () = tokio::time::sleep(config.timeout) => {
                self.stop();
                let mut gone = self.exited.clone();
                let _ = tokio::time::timeout(Duration::from_secs(5), gone.wait_for(Option::is_some)).await;
                Err(FunctionError::Timeout { function, seconds: config.timeout.as_secs_f64() })
            }
            status = async { exited.wait_for(Option::is_some).await.map(|s| s.clone().unwrap_or_default()).unwrap_or_default() } => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Err(crashed(status))
            }
        }
    }
}

fn tail_text(tail: &StdMutex<VecDeque<String>>) -> String {
    let lines = tail.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if lines.is_empty() { "(no output)".to_owned() } else { lines.iter().cloned().collect::<Vec<_>>().join("\n") }
}

/// Where one environment's lines are written.
struct LogWriter {
    prefix: String,
    target: Option<Mutex<tokio::fs::File>>,
    stderr: bool,
}

impl LogWriter {
    async fn open(sink: &LogSink, logical_id: &str) -> Self {
        let prefix = format!("[{logical_id}] ");
        match sink {
            LogSink::Discard => Self { prefix, target: None, stderr: false },
            LogSink::Stderr => Self { prefix, target: None, stderr: true },
            LogSink::File(path) => {
                if let Some(dir) = path.parent() {
                    let _ = tokio::fs::create_dir_all(dir).await;
                }
                let file = tokio::fs::OpenOptions::new().create(true).append(true).open(path).await.ok();
                Self { prefix, target: file.map(Mutex::new), stderr: false }
            }
        }
    }

    async fn line(&self, line: &str) {
        if self.stderr {
            eprintln!("{}{line}", self.prefix);
        }
        if let Some(file) = &self.target {
            let mut f = file.lock().await;
            let _ = f.write_all(line.as_bytes()).await;
            let _ = f.write_all(b"\n").await;
        }
    }
}

async fn pump(stream: impl tokio::io::AsyncRead + Unpin, sink: Arc<LogWriter>, tail: Arc<StdMutex<VecDeque<String>>>) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        sink.line(&line).await;
        let mut t = tail.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if t.len() == LOG_TAIL_LINES {
            t.pop_front();
        }
        t.push_back(line);
    }
}

// ------------------------------------------------------------------------------- the Runtime API

async fn next(State(api): State<Arc<Api>>) -> Response {
    api.ready.send_replace(true);
    let mut invocations = api.invocations.lock().await;
    let Some(invocation) = invocations.recv().await else {
        return (StatusCode::GONE, "environment stopped").into_response();
    };
    drop(invocations);
    api.in_flight
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(invocation.request_id.clone(), invocation.reply);
    let mut headers = HeaderMap::new();
    let mut put = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    };
    put("lambda-runtime-aws-request-id", &invocation.request_id);
    put("lambda-runtime-deadline-ms", &invocation.deadline_ms.to_string());
    put("lambda-runtime-invoked-function-arn", &api.function_arn);
    put("lambda-runtime-trace-id", &invocation.trace_id);
    put("content-type", "application/json");
    (StatusCode::OK, headers, invocation.payload).into_response()
}

async fn response(State(api): State<Arc<Api>>, Path(id): Path<String>, body: Bytes) -> Response {
    let waiting = api.in_flight.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&id);
    match waiting {
        Some(reply) => {
            let _ = reply.send(Reply::Response(body));
            (StatusCode::ACCEPTED, r#"{"status":"OK"}"#).into_response()
        }
        None => unknown_request(&id),
    }
}

async fn invocation_error(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (error_type, error_message) = error_body(&headers, &body);
    let waiting = api.in_flight.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&id);
    match waiting {
        Some(reply) => {
            let _ = reply.send(Reply::Error { error_type, error_message });
            (StatusCode::ACCEPTED, r#"{"status":"OK"}"#).into_response()
        }
        None => unknown_request(&id),
    }
}

async fn init_error(State(api): State<Arc<Api>>, headers: HeaderMap, body: Bytes) -> Response {
    let reported = error_body(&headers, &body);
    *api.init_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(reported);
    (StatusCode::ACCEPTED, r#"{"status":"OK"}"#).into_response()
}

fn unknown_request(id: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(
            serde_json::json!({"errorType": "InvalidRequestID", "errorMessage": format!("unknown request {id}")}),
        ),
    )
        .into_response()
}

/// `{"errorType", "errorMessage"}` of an error report, with the type header as a fallback.
fn error_body(headers: &HeaderMap, body: &[u8]) -> (String, String) {
    let doc: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let header_type = headers.get("lambda-runtime-function-error-type").and_then(|v| v.to_str().ok());
    let error_type = doc["errorType"].as_str().or(header_type).unwrap_or("Unhandled").to_owned();
    let error_message =
        doc["errorMessage"].as_str().map_or_else(|| String::from_utf8_lossy(body).into_owned(), str::to_owned);
    (error_type, error_message)
}
