//! A scenario being played: its simulator, and how many steps have run.
//!
//! Stepping back is a deterministic replay from the start (the simulator reads no
//! clock, so the same steps give the same outputs), which also makes a deep link to
//! step *n* simply "play *n* steps".

use super::scenario::{Scenario, ScenarioError, ScenarioStep};
use super::{ConnId, SimOutput, Simulator};
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug)]
pub struct Player {
    scenario: Scenario,
    sim: Simulator,
    /// Steps played so far; the next step is `steps[position]`.
    position: usize,
    /// Connection names of the steps played so far.
    conns: BTreeMap<String, ConnId>,
    /// Every output of the steps played so far.
    output: Vec<SimOutput>,
}

impl Player {
    pub fn new(scenario: Scenario) -> Player {
        let sim = Simulator::new(scenario.config.sim_config());
        Player {
            scenario,
            sim,
            position: 0,
            conns: BTreeMap::new(),
            output: Vec::new(),
        }
    }

    /// Play the next step; its outputs (none at the end).
    pub fn step_forward(&mut self) -> Vec<SimOutput> {
        let Some(step) = self.scenario.steps.get(self.position).cloned() else {
            return Vec::new();
        };
        self.position += 1;
        self.apply(&step);
        let out = self.sim.drain();
        self.output.extend(out.iter().cloned());
        out
    }

    /// Go back one step: replay from the start to the step before. Returns every
    /// output so far.
    pub fn step_back(&mut self) -> Vec<SimOutput> {
        self.seek(self.position.saturating_sub(1))
    }

    /// Back to the start, nothing played.
    pub fn restart(&mut self) {
        self.sim = Simulator::new(self.scenario.config.sim_config());
        self.position = 0;
        self.conns.clear();
        self.output.clear();
    }

    /// Play exactly `position` steps from the start (at most all of them). Returns
    /// every output so far.
    pub fn seek(&mut self, position: usize) -> Vec<SimOutput> {
        self.restart();
        for _ in 0..position.min(self.len()) {
            self.step_forward();
        }
        self.output.clone()
    }

    /// Steps played so far.
    pub fn position(&self) -> usize {
        self.position
    }

    pub fn len(&self) -> usize {
        self.scenario.steps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.scenario.steps.is_empty()
    }

    /// Whether every step has been played.
    pub fn at_end(&self) -> bool {
        self.position >= self.len()
    }

    pub fn sim(&self) -> &Simulator {
        &self.sim
    }

    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    /// Every output of the steps played so far, in order.
    pub fn output(&self) -> &[SimOutput] {
        &self.output
    }

    /// The step to play next.
    pub fn next_step(&self) -> Option<&ScenarioStep> {
        self.scenario.steps.get(self.position)
    }

    /// The connection a name of the scenario opened, once its step has been played.
    pub fn conn(&self, name: &str) -> Option<ConnId> {
        self.conns.get(name).copied()
    }

    /// The reader's own step (free play: a line typed at a connection): the steps not
    /// yet played are dropped, this one is appended and played. Because it becomes
    /// part of the scenario, stepping back and forth replays it too.
    pub fn push_step(&mut self, step: ScenarioStep) -> Result<Vec<SimOutput>, ScenarioError> {
        let mut scenario = self.scenario.clone();
        scenario.steps.truncate(self.position);
        scenario.steps.push(step);
        scenario.check_names()?;
        self.scenario = scenario;
        Ok(self.step_forward())
    }

    fn apply(&mut self, step: &ScenarioStep) {
        match step {
            ScenarioStep::Connect {
                conn,
                client,
                endpoint,
                ..
            } => {
                // `validate` ensured the client exists; a scenario built by hand that
                // names none is skipped rather than trusted.
                let Some(spec) = self.scenario.clients.iter().find(|c| &c.name == client) else {
                    return;
                };
                let id = self.sim.connect(spec.address, *endpoint);
                self.conns.insert(conn.clone(), id);
            }
            ScenarioStep::Send { conn, line, .. } => {
                if let Some(&id) = self.conns.get(conn) {
                    self.sim.send(id, &ScenarioStep::wire_bytes(line));
                }
            }
            ScenarioStep::Close { conn, .. } => {
                if let Some(&id) = self.conns.get(conn) {
                    self.sim.close(id);
                }
            }
            ScenarioStep::Advance { by_ms, .. } => {
                self.sim.advance(Duration::from_millis(*by_ms));
            }
            ScenarioStep::Note { .. } => {}
        }
    }
}
