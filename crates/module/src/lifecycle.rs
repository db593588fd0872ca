//! Starting and stopping instances: in initialisation order, and stopped in reverse, so that
//! nothing is stopped while something started after it may still use it.

use std::sync::Arc;

use async_trait::async_trait;

use crate::Instance;

/// What a module does at run time. Constructors only read configuration; anything that
/// touches the outside world (binding sockets, spawning tasks) happens in `start`.
#[async_trait]
pub trait Lifecycle: Send + Sync {
    /// Called once, in initialisation order. An endpoint returns once it listens.
    async fn start(&self) -> Result<(), String>;
    /// Called once, in reverse order, for every instance whose `start` succeeded.
    async fn stop(&self);
}

/// The instances that started, to stop in reverse order.
#[derive(Debug, Default)]
pub struct Running {
    started: Vec<Arc<Instance>>,
}

impl Running {
    /// Starts `instances` in order. On a failure, stops what had started and returns the
    /// error naming the instance.
    pub async fn start(instances: &[Arc<Instance>]) -> Result<Running, String> {
        let mut running = Running::default();
        for instance in instances {
            let Some(lifecycle) = &instance.lifecycle else {
                continue;
            };
            if let Err(e) = lifecycle.start().await {
                running.stop().await;
                return Err(format!(
                    "{}: {} ({}): {e}",
                    instance.pos, instance.module, instance.label
                ));
            }
            tracing::debug!(module = instance.module, instance = %instance.label, "started");
            running.started.push(instance.clone());
        }
        Ok(running)
    }

    pub async fn stop(&mut self) {
        while let Some(instance) = self.started.pop() {
            if let Some(lifecycle) = &instance.lifecycle {
                lifecycle.stop().await;
                tracing::debug!(module = instance.module, instance = %instance.label, "stopped");
            }
        }
    }

    pub fn len(&self) -> usize {
        self.started.len()
    }

    pub fn is_empty(&self) -> bool {
        self.started.is_empty()
    }
}
