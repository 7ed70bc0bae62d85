//! The explainer's state: the shipped scenarios, the one being played (core's
//! [`Player`]), the outputs of each step played, and the dashboard state those
//! outputs' events build. Plain Rust, tested natively; the views only read it.
//!
//! Why per-step outputs: the diagram marks the current step's arrows and the line
//! panel explains the current step's lines, so outputs are kept grouped by the step
//! that produced them. Stepping back replays from the start (the player's contract: the
//! simulator reads no clock, so a replay gives the same outputs).

use crate::i18n::Lang;
use crate::state::UiState;
use crate::wire::scenario::scenarios;
use popgate_core::SessionId;
use popgate_core::dashboard::DashboardState;
use popgate_core::sim::{ConnId, Endpoint, Player, Scenario, ScenarioStep, SimOutput};
use std::rc::Rc;

/// Playback speeds, as multiples of the normal pace.
pub const SPEEDS: [Speed; 4] = [Speed::Half, Speed::One, Speed::Two, Speed::Four];

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Speed {
    Half,
    #[default]
    One,
    Two,
    Four,
}

impl Speed {
    /// The pause between two steps while playing.
    pub fn interval_ms(self) -> u32 {
        const NORMAL: u32 = 1600;
        match self {
            Speed::Half => NORMAL * 2,
            Speed::One => NORMAL,
            Speed::Two => NORMAL / 2,
            Speed::Four => NORMAL / 4,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Speed::Half => "0.5×",
            Speed::One => "1×",
            Speed::Two => "2×",
            Speed::Four => "4×",
        }
    }

    /// For test hooks: `0.5`, `1`, `2`, `4`.
    pub fn value(self) -> &'static str {
        match self {
            Speed::Half => "0.5",
            Speed::One => "1",
            Speed::Two => "2",
            Speed::Four => "4",
        }
    }
}

/// A connection as the reader sees it: the scenario's name for it, whose it is, where
/// it goes, and (once opened) its simulator id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnInfo {
    pub name: String,
    /// Index into the scenario's `clients`.
    pub client: usize,
    pub endpoint: Endpoint,
    pub id: Option<ConnId>,
}

/// The scenario named by a deep link: its number from 1 (`"2"`) or its id.
pub fn find_scenario(list: &[Scenario], key: &str) -> Option<usize> {
    let key = key.trim();
    match key.parse::<usize>() {
        Ok(n) => (1..=list.len()).contains(&n).then(|| n - 1),
        Err(_) => list.iter().position(|s| s.id == key),
    }
}

impl std::fmt::Debug for Explainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Explainer")
            .field("scenario", &self.scenario().id)
            .field("position", &self.position())
            .field("lang", &self.lang)
            .field("playing", &self.playing)
            .field("speed", &self.speed)
            .finish_non_exhaustive()
    }
}

pub struct Explainer {
    list: Rc<Vec<Scenario>>,
    index: usize,
    player: Player,
    /// `steps[i]`: the outputs of step `i` (0-based), for the steps played so far.
    steps: Vec<Vec<SimOutput>>,
    /// The dashboard's views read this, rebuilt after every change.
    ui: Rc<UiState>,
    pub lang: Lang,
    pub playing: bool,
    pub speed: Speed,
}

impl Explainer {
    /// The shipped scenarios; `scenario` (a number or id, `None`: the first) played up
    /// to `step` steps.
    pub fn new(lang: Lang, scenario: Option<&str>, step: Option<usize>) -> Explainer {
        Explainer::with_scenarios(scenarios(), lang, scenario, step)
    }

    /// As [`Explainer::new`], with these scenarios. An unknown scenario opens the first.
    pub fn with_scenarios(
        list: Vec<Scenario>,
        lang: Lang,
        scenario: Option<&str>,
        step: Option<usize>,
    ) -> Explainer {
        let index = scenario
            .and_then(|key| find_scenario(&list, key))
            .unwrap_or(0);
        let player = Player::new(list.get(index).cloned().unwrap_or_else(empty_scenario));
        let mut e = Explainer {
            list: Rc::new(list),
            index,
            player,
            steps: Vec::new(),
            ui: Rc::default(),
            lang,
            playing: false,
            speed: Speed::default(),
        };
        e.seek(step.unwrap_or(0));
        e
    }

    pub fn scenarios(&self) -> &[Scenario] {
        &self.list
    }

    /// The scenario being played (with any steps the reader added in free play).
    pub fn scenario(&self) -> &Scenario {
        self.player.scenario()
    }

    /// Its position in the list, from 0 (its number is one more).
    pub fn index(&self) -> usize {
        self.index
    }

    pub fn position(&self) -> usize {
        self.player.position()
    }

    pub fn len(&self) -> usize {
        self.player.len()
    }

    pub fn is_empty(&self) -> bool {
        self.player.is_empty()
    }

    pub fn at_end(&self) -> bool {
        self.player.at_end()
    }

    pub fn player(&self) -> &Player {
        &self.player
    }

    pub fn ui(&self) -> Rc<UiState> {
        self.ui.clone()
    }

    /// Outputs grouped by the step that made them.
    pub fn step_outputs(&self) -> &[Vec<SimOutput>] {
        &self.steps
    }

    /// The step played last (what the note and the line panel describe).
    pub fn current_step(&self) -> Option<&ScenarioStep> {
        self.position()
            .checked_sub(1)
            .and_then(|i| self.scenario().steps.get(i))
    }

    /// The text for the reader at this point: the last played step's note, or the
    /// scenario's summary before the first step.
    pub fn note(&self) -> &str {
        let lang = self.lang.tag();
        match self.current_step() {
            None => self.scenario().summary.get(lang),
            Some(step) => step.note().map(|t| t.get(lang)).unwrap_or(""),
        }
    }

    /// Whether this scenario is the reader's own (free play: typed commands).
    pub fn is_free_play(&self) -> bool {
        self.scenario().id == "free-play"
    }

    /// Every connection the scenario opens, in order, with its id once opened.
    pub fn connections(&self) -> Vec<ConnInfo> {
        let scenario = self.scenario();
        scenario
            .steps
            .iter()
            .filter_map(|s| match s {
                ScenarioStep::Connect {
                    conn,
                    client,
                    endpoint,
                    ..
                } => Some(ConnInfo {
                    name: conn.clone(),
                    client: scenario.clients.iter().position(|c| &c.name == client)?,
                    endpoint: *endpoint,
                    id: self.player.conn(conn),
                }),
                _ => None,
            })
            .collect()
    }

    /// The client (index into `clients`) a connection belongs to.
    pub fn client_of(&self, conn: ConnId) -> Option<usize> {
        self.connections()
            .into_iter()
            .find(|c| c.id == Some(conn))
            .map(|c| c.client)
    }

    pub fn step_forward(&mut self) {
        if self.at_end() {
            self.playing = false;
            return;
        }
        let out = self.player.step_forward();
        self.steps.push(out);
        if self.at_end() {
            self.playing = false;
        }
        self.rebuild();
    }

    pub fn step_back(&mut self) {
        self.playing = false;
        self.seek(self.position().saturating_sub(1));
    }

    pub fn restart(&mut self) {
        self.playing = false;
        self.seek(0);
    }

    /// Play exactly `position` steps from the start (at most all of them).
    pub fn seek(&mut self, position: usize) {
        self.player.restart();
        self.steps.clear();
        for _ in 0..position.min(self.player.len()) {
            let out = self.player.step_forward();
            self.steps.push(out);
        }
        self.rebuild();
    }

    /// Another scenario (by list index), from its start.
    pub fn choose(&mut self, index: usize) {
        let Some(scenario) = self.list.get(index).cloned() else {
            return;
        };
        self.index = index;
        self.playing = false;
        self.player = Player::new(scenario);
        self.seek(0);
    }

    /// Play, or pause; play from the end starts over.
    pub fn toggle_play(&mut self) {
        if self.playing {
            self.playing = false;
        } else {
            if self.at_end() {
                self.seek(0);
            }
            self.playing = !self.at_end();
        }
    }

    /// Free play: the reader's line on a connection, played as a new step.
    pub fn type_line(&mut self, conn: &str, line: &str) {
        self.push(ScenarioStep::Send {
            conn: conn.to_owned(),
            line: line.to_owned(),
            note: None,
        });
    }

    /// Free play: the clock jumps ahead.
    pub fn advance(&mut self, by_ms: u64) {
        self.push(ScenarioStep::Advance { by_ms, note: None });
    }

    /// Free play: a new connection from the client of `like`, to the same endpoint.
    pub fn reconnect(&mut self, like: &str) {
        let conns = self.connections();
        let Some(old) = conns.iter().find(|c| c.name == like) else {
            return;
        };
        let Some(client) = self.scenario().clients.get(old.client) else {
            return;
        };
        // A fresh name: the scenario format gives each connection its own.
        let base = like.split('#').next().unwrap_or(like);
        let name = (2..)
            .map(|n| format!("{base}#{n}"))
            .find(|n| !conns.iter().any(|c| &c.name == n))
            .unwrap_or_else(|| base.to_owned());
        self.push(ScenarioStep::Connect {
            conn: name,
            client: client.name.clone(),
            endpoint: old.endpoint,
            note: None,
        });
    }

    fn push(&mut self, step: ScenarioStep) {
        self.playing = false;
        // The player checks the step against the scenario (a name that does not exist
        // is refused, never played).
        if let Ok(out) = self.player.push_step(step) {
            self.steps.push(out);
            self.rebuild();
        }
    }

    /// Shows a session's transcript (`None`: closes it).
    pub fn select(&mut self, session: Option<SessionId>) {
        let mut ui = (*self.ui).clone();
        ui.selected = session;
        self.ui = Rc::new(ui);
    }

    /// The dashboard state from every event so far, on the simulator's clock, with the
    /// grant table as the simulator holds it.
    fn rebuild(&mut self) {
        let sim = self.player.sim();
        let mut dash = DashboardState::default();
        for out in self.steps.iter().flatten() {
            if let SimOutput::Event(event) = out {
                dash.apply(event);
            }
        }
        dash.now = sim.now();
        dash.grants = sim.grants().into_iter().map(|g| (g.key, g)).collect();
        let selected = self.ui.selected.filter(|id| dash.sessions.contains_key(id));
        let mut ui = UiState::default();
        ui.dash = Rc::new(dash);
        ui.connection = crate::state::Connection::Live;
        ui.selected = selected;
        self.ui = Rc::new(ui);
    }

    /// Messages delivered to local mailboxes, and relayed (queued for delivery
    /// elsewhere), so far.
    pub fn delivered_and_relayed(&self) -> (usize, usize) {
        let sim = self.player.sim();
        let delivered = self
            .scenario()
            .config
            .users
            .iter()
            .map(|u| sim.maildrop(&u.address).len())
            .sum();
        (delivered, sim.queued().len())
    }
}

/// A scenario with no steps: what plays if none shipped (never, in a correct build).
fn empty_scenario() -> Scenario {
    Scenario {
        version: popgate_core::sim::scenario::VERSION,
        id: String::new(),
        title: Default::default(),
        summary: Default::default(),
        config: popgate_core::sim::ScenarioConfig {
            hostname: String::new(),
            domains: Vec::new(),
            users: Vec::new(),
            grant: Default::default(),
            start_ms: popgate_core::sim::scenario::DEFAULT_START.0,
        },
        clients: Vec::new(),
        steps: Vec::new(),
    }
}
