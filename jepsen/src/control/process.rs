//! One managed child process: start, stop (SIGTERM then SIGKILL), kill -9,
//! pause (SIGSTOP), resume (SIGCONT). Output goes to a log file that survives
//! restarts. The child is killed when the handle is dropped.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::ControlError;

/// What to run.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    /// Short name for logs and errors, e.g. `broker-0`.
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Inherited variables with this prefix are removed (those in `env`
    /// are set afterwards).
    pub strip_env_prefix: Option<String>,
    pub cwd: Option<PathBuf>,
    /// stdout and stderr are appended here.
    pub log: PathBuf,
}

/// Lifecycle state as the harness sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Stopped,
    Running,
    Paused,
}

/// A child process under the harness's control.
#[derive(Debug)]
pub struct Managed {
    spec: ProcessSpec,
    child: Option<Child>,
    paused: bool,
    /// How the last run ended, if it did.
    last_exit: Option<ExitStatus>,
}

impl Managed {
    pub fn new(spec: ProcessSpec) -> Self {
        Managed {
            spec,
            child: None,
            paused: false,
            last_exit: None,
        }
    }

    pub fn spec(&self) -> &ProcessSpec {
        &self.spec
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn log_path(&self) -> &Path {
        &self.spec.log
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// How the previous run exited (None while running or never started).
    pub fn last_exit(&self) -> Option<ExitStatus> {
        self.last_exit
    }

    /// Current state; notices a child that exited on its own.
    pub fn state(&mut self) -> State {
        if let Some(child) = self.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            self.last_exit = Some(status);
            self.child = None;
            self.paused = false;
        }
        match (&self.child, self.paused) {
            (None, _) => State::Stopped,
            (Some(_), true) => State::Paused,
            (Some(_), false) => State::Running,
        }
    }

    /// Starts the process; a no-op when it already runs.
    pub fn start(&mut self) -> Result<(), ControlError> {
        if self.state() != State::Stopped {
            return Ok(());
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.spec.log)
            .map_err(|e| ControlError::io(format!("open log {}", self.spec.log.display()), e))?;
        let log2 = log
            .try_clone()
            .map_err(|e| ControlError::io("clone log handle", e))?;
        let mut cmd = Command::new(&self.spec.program);
        if let Some(prefix) = &self.spec.strip_env_prefix {
            for (k, _) in std::env::vars_os() {
                if k.to_string_lossy().starts_with(prefix.as_str()) {
                    cmd.env_remove(k);
                }
            }
        }
        cmd.args(&self.spec.args)
            .envs(self.spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        if let Some(cwd) = &self.spec.cwd {
            cmd.current_dir(cwd);
        }
        let child = cmd.spawn().map_err(|e| {
            ControlError::io(
                format!("spawn {} ({})", self.spec.name, self.spec.program.display()),
                e,
            )
        })?;
        self.child = Some(child);
        self.paused = false;
        self.last_exit = None;
        Ok(())
    }

    fn signal(&self, sig: Signal) -> Result<(), ControlError> {
        let Some(child) = &self.child else {
            return Err(ControlError::NotRunning(self.spec.name.clone()));
        };
        let pid = i32::try_from(child.id())
            .map_err(|_| ControlError::NotRunning(self.spec.name.clone()))?;
        kill(Pid::from_raw(pid), sig).map_err(|e| ControlError::Signal {
            name: self.spec.name.clone(),
            signal: sig.as_str(),
            source: e,
        })
    }

    /// kill -9 and reap. A no-op when not running.
    pub fn kill(&mut self) -> Result<(), ControlError> {
        if self.state() == State::Stopped {
            return Ok(());
        }
        self.signal(Signal::SIGKILL)?;
        self.reap()
    }

    fn reap(&mut self) -> Result<(), ControlError> {
        if let Some(mut child) = self.child.take() {
            let status = child
                .wait()
                .map_err(|e| ControlError::io(format!("wait for {}", self.spec.name), e))?;
            self.last_exit = Some(status);
        }
        self.paused = false;
        Ok(())
    }

    /// SIGTERM, then SIGKILL if still alive after `grace`.
    pub async fn stop(&mut self, grace: Duration) -> Result<(), ControlError> {
        if self.state() == State::Stopped {
            return Ok(());
        }
        if self.paused {
            self.signal(Signal::SIGCONT)?;
        }
        self.signal(Signal::SIGTERM)?;
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.state() == State::Stopped {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.kill()
    }

    /// SIGSTOP: the process keeps its sockets but stops answering.
    pub fn pause(&mut self) -> Result<(), ControlError> {
        if self.state() != State::Running {
            return Err(ControlError::NotRunning(self.spec.name.clone()));
        }
        self.signal(Signal::SIGSTOP)?;
        self.paused = true;
        Ok(())
    }

    /// SIGCONT after [`Managed::pause`]; a no-op when not paused.
    pub fn resume(&mut self) -> Result<(), ControlError> {
        if self.state() != State::Paused {
            return Ok(());
        }
        self.signal(Signal::SIGCONT)?;
        self.paused = false;
        Ok(())
    }
}

impl Drop for Managed {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.signal(Signal::SIGCONT);
            let _ = self.signal(Signal::SIGKILL);
            let _ = self.reap();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sleeper(dir: &Path) -> Managed {
        Managed::new(ProcessSpec {
            name: "sleeper".into(),
            program: "sleep".into(),
            args: vec!["300".into()],
            env: vec![],
            strip_env_prefix: None,
            cwd: Some(dir.to_path_buf()),
            log: dir.join("sleeper.log"),
        })
    }

    fn proc_state(pid: u32) -> Option<char> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The state follows the parenthesised command name.
        stat.rsplit(')').next()?.trim().chars().next()
    }

    #[tokio::test]
    async fn lifecycle_start_pause_resume_kill_restart_stop() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut p = sleeper(dir.path());
        assert_eq!(p.state(), State::Stopped);
        p.start().expect("start");
        assert_eq!(p.state(), State::Running);
        let pid = p.pid().expect("pid");

        p.pause().expect("pause");
        assert_eq!(p.state(), State::Paused);
        // The kernel reports it stopped ('T').
        let mut st = proc_state(pid);
        for _ in 0..50 {
            if st == Some('T') {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            st = proc_state(pid);
        }
        assert_eq!(st, Some('T'));
        p.resume().expect("resume");
        assert_eq!(p.state(), State::Running);
        assert_ne!(proc_state(pid), Some('T'));

        p.kill().expect("kill");
        assert_eq!(p.state(), State::Stopped);
        assert!(proc_state(pid).is_none(), "killed process is reaped");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(p.last_exit().and_then(|s| s.signal()), Some(9));

        p.start().expect("restart");
        let pid2 = p.pid().expect("pid");
        assert_ne!(pid, pid2);
        p.stop(Duration::from_secs(5)).await.expect("stop");
        assert_eq!(p.last_exit().and_then(|s| s.signal()), Some(15));
        assert!(proc_state(pid2).is_none());
    }

    #[tokio::test]
    async fn drop_kills_even_a_paused_child() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut p = sleeper(dir.path());
        p.start().expect("start");
        let pid = p.pid().expect("pid");
        p.pause().expect("pause");
        drop(p);
        assert!(proc_state(pid).is_none());
    }

    #[test]
    fn exit_on_its_own_is_noticed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut p = Managed::new(ProcessSpec {
            name: "echo".into(),
            program: "sh".into(),
            args: vec!["-c".into(), "echo hello; exit 3".into()],
            env: vec![],
            strip_env_prefix: None,
            cwd: None,
            log: dir.path().join("echo.log"),
        });
        p.start().expect("start");
        let deadline = Instant::now() + Duration::from_secs(10);
        while p.state() != State::Stopped && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(p.last_exit().and_then(|s| s.code()), Some(3));
        let log = std::fs::read_to_string(dir.path().join("echo.log")).expect("log");
        assert_eq!(log, "hello\n");
    }

    #[test]
    fn missing_program_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut p = Managed::new(ProcessSpec {
            name: "nope".into(),
            program: dir.path().join("does-not-exist"),
            args: vec![],
            env: vec![],
            strip_env_prefix: None,
            cwd: None,
            log: dir.path().join("nope.log"),
        });
        assert!(matches!(p.start(), Err(ControlError::Io { .. })));
        assert!(matches!(p.pause(), Err(ControlError::NotRunning(_))));
    }
}
