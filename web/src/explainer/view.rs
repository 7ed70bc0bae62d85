//! The explainer's page: player controls, the sequence diagram, the state panel (the
//! dashboard's own views, fed from the simulator), the current step's lines explained,
//! and free play.
//!
//! Test hooks (`data-testid`): `explainer` (the root, with `data-scenario`,
//! `data-position`, `data-total`, `data-lang`, `data-now`), `ex-scenario` (the picker),
//! `ex-restart`, `ex-back`, `ex-play` (`data-playing`), `ex-forward`, `ex-speed`
//! (each with `data-speed`, `aria-pressed`), `ex-step` (the counter), `ex-clock`
//! (`data-now`), `ex-note`, `ex-link`, `lang-toggle` (`data-lang`: the current one),
//! `diagram`, `diagram-lane` (`data-lane`), `diagram-arrow` (`data-kind`, `data-step`,
//! `data-call` for grant calls, `data-current`), `ex-line` (`data-dir`,
//! `data-annotation`: the table key), `ex-annotation`, `ex-rfc`, `ex-delivered`,
//! `ex-relayed`, `free-play`, `free-conn` (`data-conn`, `data-open`), `free-input`,
//! `free-send`, `free-advance` (`data-minutes`), `free-reconnect`; and the dashboard's
//! own (`grant-row`, `grant-countdown` with `data-remaining-ms`, `session-row`...).

use super::annotate::{Annotation, LineContext};
use super::diagram::{Lane, Row, RowKind, endpoint_name, rows};
use super::model::{ConnInfo, Explainer, SPEEDS, Speed};
use super::route::{Options, Theme, step_fragment};
use crate::components::clock::Now;
use crate::components::counters::CounterList;
use crate::components::grants::GrantTable;
use crate::components::sessions::SessionList;
use crate::components::transcript::Transcript;
use crate::components::{Commands, Shared};
use crate::format;
use crate::i18n::{Lang, Strings, fill};
use crate::state::Action;
use popgate_core::SessionId;
use popgate_core::sim::{ConnId, SimOutput};
use std::collections::BTreeMap;
use std::rc::Rc;
use yew::prelude::*;

/// What the reader can do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Act {
    Forward,
    Back,
    Restart,
    TogglePlay,
    Speed(Speed),
    /// Another scenario, by list index.
    Choose(usize),
    Lang(Lang),
    /// Play up to this many steps.
    Seek(usize),
    /// Free play: a line typed at the connection named so.
    Type {
        conn: String,
        line: String,
    },
    Advance {
        minutes: u64,
    },
    Reconnect(String),
    Select(Option<SessionId>),
}

/// Applies one of the reader's actions.
pub fn act(e: &mut Explainer, a: Act) {
    match a {
        Act::Forward => {
            e.playing = false;
            e.step_forward();
        }
        Act::Back => e.step_back(),
        Act::Restart => e.restart(),
        Act::TogglePlay => e.toggle_play(),
        Act::Speed(speed) => e.speed = speed,
        Act::Choose(index) => e.choose(index),
        Act::Lang(lang) => e.lang = lang,
        Act::Seek(position) => {
            e.playing = false;
            e.seek(position);
        }
        Act::Type { conn, line } => e.type_line(&conn, &line),
        Act::Advance { minutes } => e.advance(minutes.saturating_mul(60_000)),
        Act::Reconnect(conn) => e.reconnect(&conn),
        Act::Select(id) => e.select(id),
    }
}

#[derive(Clone, Debug, PartialEq, Properties)]
pub struct ExplainerProps {
    pub options: Options,
    /// The language to start in (the options', else the browser's).
    pub lang: Lang,
    /// The page is the explainer's own (not mounted into a host page): keep the URL's
    /// fragment on the current step, so it can be copied as a deep link.
    #[prop_or_default]
    pub standalone: bool,
}

#[function_component(ExplainerApp)]
pub fn explainer_app(props: &ExplainerProps) -> Html {
    let model = {
        let o = props.options.clone();
        let lang = props.lang;
        use_mut_ref(move || Explainer::new(lang, o.scenario.as_deref(), o.step))
    };
    let update = use_force_update();
    let on_act = {
        let model = model.clone();
        use_callback((), move |a: Act, _| {
            act(&mut model.borrow_mut(), a);
            update.force_update();
        })
    };
    let e = model.borrow();
    let s = e.lang.strings();
    let number = (e.index() + 1).to_string();
    let fragment = step_fragment(&number, e.position());
    use_page_effects(props, &e, &fragment, &on_act);

    // The dashboard's views read these contexts; a selected session opens its
    // transcript, the other commands (revoke, messages) need a server and do nothing.
    let commands = use_memo(on_act.clone(), |on_act| Commands {
        dispatch: on_act.reform(|a: Action| match a {
            Action::Select(id) => Act::Select(id),
            _ => Act::Select(None),
        }),
        revoke: Callback::noop(),
        add_grant: Callback::noop(),
        open_message: Callback::noop(),
    });
    let ui: Shared = e.ui();
    let now = Now {
        server: ui.dash.now,
        local: 0,
    };
    let (delivered, relayed) = e.delivered_and_relayed();
    html! {
        <ContextProvider<Lang> context={e.lang}>
        <ContextProvider<Commands> context={(*commands).clone()}>
        <ContextProvider<Shared> context={ui.clone()}>
        <ContextProvider<Now> context={now}>
        <div class="popgate-root app explainer" lang={e.lang.tag()}
            data-theme={props.options.theme.attr()}
            data-testid="explainer"
            data-scenario={e.scenario().id.clone()}
            data-position={e.position().to_string()}
            data-total={e.len().to_string()}
            data-lang={e.lang.tag()}
            data-now={ui.dash.now.0.to_string()}>
            <header class="top">
                <h1>{ s.app_title }</h1>
                <span class="tagline">{ s.ex_title }</span>
                <div class="ex-head-tools">
                    { scenario_picker(s, &e, &on_act) }
                    { lang_toggle(e.lang, &on_act) }
                </div>
            </header>
            { player_bar(s, &e, &fragment, &on_act) }
            <main class="ex-grid">
                <section class="panel ex-diagram-panel" aria-labelledby="ex-diagram-title">
                    <h2 id="ex-diagram-title">{ e.scenario().title.get(e.lang.tag()).to_owned() }</h2>
                    <Diagram rows={Rc::new(rows(s, &e))} lanes={lanes(s, &e)}
                        current={e.position().checked_sub(1)} on_act={on_act.clone()} />
                </section>
                <div class="col">
                    if e.is_free_play() {
                        { free_play(s, &e, &on_act) }
                    }
                    <section class="panel ex-lines-panel" aria-labelledby="ex-lines-title">
                        <h2 id="ex-lines-title">{ s.ex_lines_title }</h2>
                        { step_lines(s, &e) }
                    </section>
                    <section class="panel ex-state" aria-labelledby="ex-state-title">
                        <h2 id="ex-state-title">{ s.ex_state_title }</h2>
                        <h3>{ s.grants_title }</h3>
                        <GrantTable />
                        <h3>{ s.sessions_title }</h3>
                        <SessionList />
                        <dl class="counters ex-totals">
                            <div class="counter" data-testid="ex-delivered" data-value={delivered.to_string()}>
                                <dt>{ s.ex_delivered }</dt><dd>{ delivered.to_string() }</dd>
                            </div>
                            <div class="counter" data-testid="ex-relayed" data-value={relayed.to_string()}>
                                <dt>{ s.ex_relayed }</dt><dd>{ relayed.to_string() }</dd>
                            </div>
                        </dl>
                        <h3>{ s.counters_title }</h3>
                        <CounterList />
                    </section>
                    if ui.selected.is_some() {
                        <section class="panel" aria-labelledby="ex-transcript-title">
                            <h2 id="ex-transcript-title">{ s.transcript_title }</h2>
                            <Transcript />
                        </section>
                    }
                </div>
            </main>
            <footer class="foot">{ format!("popgate {} · {}", crate::VERSION, s.ex_tagline) }</footer>
        </div>
        </ContextProvider<Now>>
        </ContextProvider<Shared>>
        </ContextProvider<Commands>>
        </ContextProvider<Lang>>
    }
}

/// The timer that plays, the page's language and theme, and the URL kept on the
/// current step (standalone only). Browser only; nothing on the host.
#[hook]
fn use_page_effects(props: &ExplainerProps, e: &Explainer, fragment: &str, on_act: &Callback<Act>) {
    let playing = e.playing;
    let at_end = e.at_end();
    let key = (playing, e.speed, e.position(), e.index(), at_end);
    let interval = e.speed.interval_ms();
    {
        let on_act = on_act.clone();
        use_effect_with(key, move |_| {
            #[cfg(target_arch = "wasm32")]
            let timer = (playing && !at_end).then(|| {
                gloo_timers::callback::Timeout::new(interval, move || on_act.emit(Act::Forward))
            });
            #[cfg(not(target_arch = "wasm32"))]
            let _ = (interval, on_act, playing);
            move || {
                #[cfg(target_arch = "wasm32")]
                drop(timer);
            }
        });
    }
    let lang = e.lang;
    let standalone = props.standalone;
    let theme = props.options.theme;
    let link = format!("{fragment}?lang={}{}", lang.tag(), theme_suffix(theme));
    use_effect_with((link, standalone), move |(link, standalone)| {
        #[cfg(target_arch = "wasm32")]
        if *standalone {
            crate::embed::page_follows(lang, theme, link);
        }
        #[cfg(not(target_arch = "wasm32"))]
        let _ = (link, standalone, lang, theme);
    });
}

fn theme_suffix(theme: Theme) -> String {
    theme
        .attr()
        .map(|t| format!("&theme={t}"))
        .unwrap_or_default()
}

fn scenario_picker(s: &Strings, e: &Explainer, on_act: &Callback<Act>) -> Html {
    let lang = e.lang.tag();
    let onchange = on_act.reform(|ev: Event| {
        let index = ev
            .target_dyn_into::<web_sys::HtmlSelectElement>()
            .and_then(|select| select.value().parse().ok())
            .unwrap_or(0);
        Act::Choose(index)
    });
    html! {
        <label class="ex-picker">
            <span>{ s.ex_scenario }</span>
            <select data-testid="ex-scenario" {onchange}>
                { for e.scenarios().iter().enumerate().map(|(i, sc)| html! {
                    <option value={i.to_string()} selected={i == e.index()} data-id={sc.id.clone()}>
                        { format!("{}. {}", i + 1, sc.title.get(lang)) }
                    </option>
                }) }
            </select>
        </label>
    }
}

fn lang_toggle(lang: Lang, on_act: &Callback<Act>) -> Html {
    let next = lang.next();
    let s = lang.strings();
    let onclick = on_act.reform(move |_: MouseEvent| Act::Lang(next));
    html! {
        <button type="button" class="lang-toggle" data-testid="lang-toggle" data-lang={lang.tag()}
            lang={next.tag()} title={s.ex_lang_title} {onclick}>
            { next.strings().lang_name }
        </button>
    }
}

fn player_bar(s: &Strings, e: &Explainer, fragment: &str, on_act: &Callback<Act>) -> Html {
    let button = |testid: &'static str,
                  label: &'static str,
                  icon: &'static str,
                  a: Act,
                  disabled: bool| {
        let onclick = on_act.reform(move |_: MouseEvent| a.clone());
        html! {
            <button type="button" class="ex-btn" data-testid={testid} title={label} aria-label={label}
                {disabled} {onclick}>{ icon }</button>
        }
    };
    let (play_label, play_icon) = if e.playing {
        (s.ex_pause, "❚❚")
    } else {
        (s.ex_play, "▶")
    };
    let play = on_act.reform(|_: MouseEvent| Act::TogglePlay);
    let note = e.note().to_owned();
    // Free play has no end: the reader adds the steps.
    let done = e.at_end() && e.position() > 0 && !e.is_free_play();
    html! {
        <section class="panel ex-player" aria-label={s.ex_play}>
            <div class="ex-controls">
                { button("ex-restart", s.ex_restart, "↺", Act::Restart, e.position() == 0) }
                { button("ex-back", s.ex_back, "◀", Act::Back, e.position() == 0) }
                <button type="button" class="ex-btn ex-play" data-testid="ex-play" title={play_label}
                    aria-label={play_label} data-playing={e.playing.to_string()} onclick={play}
                    disabled={e.is_empty()}>{ play_icon }</button>
                { button("ex-forward", s.ex_forward, "▶▶", Act::Forward, e.at_end()) }
                <span class="ex-speed" role="group" aria-label={s.ex_speed}>
                    <span class="muted">{ s.ex_speed }</span>
                    { for SPEEDS.iter().map(|&speed| {
                        let onclick = on_act.reform(move |_: MouseEvent| Act::Speed(speed));
                        let on = speed == e.speed;
                        html! {
                            <button type="button" class={classes!("chip", on.then_some("on"))}
                                data-testid="ex-speed" data-speed={speed.value()}
                                aria-pressed={on.to_string()} {onclick}>{ speed.label() }</button>
                        }
                    }) }
                </span>
                <span class="ex-step" data-testid="ex-step" data-position={e.position().to_string()}
                    data-total={e.len().to_string()}>
                    { fill(s.ex_step_of, &[("n", &e.position().to_string()), ("total", &e.len().to_string())]) }
                </span>
                <span class="ex-clock" data-testid="ex-clock" data-now={e.ui().dash.now.0.to_string()}
                    title={s.ex_clock}>
                    <span class="muted">{ s.ex_clock }</span>{ " " }
                    <time>{ format::clock_time(e.ui().dash.now).get(..8).unwrap_or("").to_owned() }</time>
                </span>
                <a class="ex-link" data-testid="ex-link" href={fragment.to_owned()} title={s.ex_link}>{ "#" }</a>
            </div>
            <p class="ex-note" data-testid="ex-note" aria-live="polite">
                if e.position() == 0 {
                    <span class="muted">{ format!("{} ", s.ex_start_hint) }</span>
                }
                { note }
                if done {
                    <span class="muted">{ format!(" {}", s.ex_done) }</span>
                }
            </p>
        </section>
    }
}

/// The lifelines: `(lane, label, second line)`.
fn lanes(s: &Strings, e: &Explainer) -> Rc<Vec<(Lane, String, String)>> {
    let lang = e.lang.tag();
    let mut out: Vec<(Lane, String, String)> = e
        .scenario()
        .clients
        .iter()
        .enumerate()
        .map(|(i, c)| {
            // "Taro's laptop (198.51.100.23)": the name, then the address below it.
            let label = c.label.get(lang);
            let (name, rest) = label
                .split_once(" (")
                .or_else(|| label.split_once('（'))
                .unwrap_or((label, ""));
            let rest = rest.trim_end_matches([')', '）']);
            (Lane::Client(i), name.to_owned(), rest.to_owned())
        })
        .collect();
    out.push((Lane::Pop3, s.ex_lane_pop3.to_owned(), "110".to_owned()));
    out.push((Lane::Grants, s.ex_lane_grants.to_owned(), String::new()));
    out.push((Lane::Smtp, s.ex_lane_smtp.to_owned(), "25 / 587".to_owned()));
    Rc::new(out)
}

#[derive(Properties)]
struct DiagramProps {
    rows: Rc<Vec<Row>>,
    lanes: Rc<Vec<(Lane, String, String)>>,
    current: Option<usize>,
    on_act: Callback<Act>,
}

impl PartialEq for DiagramProps {
    fn eq(&self, other: &Self) -> bool {
        self.rows == other.rows && self.lanes == other.lanes && self.current == other.current
    }
}

// Whole SVG user units: integer coordinates keep float formatting out of the module.
const WIDTH: i32 = 760;
const MARGIN: i32 = 70;
const HEAD: i32 = 52;
const ROW: i32 = 30;

/// The sequence diagram, drawn as SVG; the rows of the current step are marked, and
/// each step's number seeks to it.
#[function_component(Diagram)]
fn diagram(props: &DiagramProps) -> Html {
    let scroller = use_node_ref();
    {
        let scroller = scroller.clone();
        use_effect_with((props.rows.len(), props.current), move |_| {
            // Keep the newest rows in view.
            if let Some(el) = scroller.cast::<web_sys::Element>() {
                el.set_scroll_top(el.scroll_height());
            }
        });
    }
    let n = props.lanes.len().max(2);
    let x_of = |lane: Lane| {
        let i = props
            .lanes
            .iter()
            .position(|(l, _, _)| *l == lane)
            .unwrap_or(0);
        let (i, n) = (i32::try_from(i).unwrap_or(0), i32::try_from(n).unwrap_or(2));
        MARGIN + i * (WIDTH - 2 * MARGIN) / (n - 1)
    };
    let height = HEAD + ROW * (i32::try_from(props.rows.len()).unwrap_or(i32::MAX / ROW - 2) + 1);
    let mut last_step = None;
    let rows = props.rows.iter().enumerate().map(|(i, row)| {
        let y = HEAD + ROW * (i32::try_from(i).unwrap_or(0) + 1);
        let first_of_step = last_step != Some(row.step);
        last_step = Some(row.step);
        let current = props.current == Some(row.step);
        let marker = first_of_step.then(|| {
            let seek = props.on_act.reform({
                let step = row.step;
                move |_: MouseEvent| Act::Seek(step + 1)
            });
            html! {
                <g class="ex-stepno" onclick={seek} data-testid="diagram-step" data-step={(row.step + 1).to_string()}>
                    <circle cx="14" cy={fmt(y - 4)} r="10" />
                    <text x="14" y={fmt(y)} text-anchor="middle">{ (row.step + 1).to_string() }</text>
                </g>
            }
        });
        html! {
            <>
                { for marker }
                { draw_row(row, y, current, &x_of) }
            </>
        }
    });
    let kind_of = |lane: &Lane| match lane {
        Lane::Client(_) => "client",
        Lane::Pop3 => "pop3",
        Lane::Grants => "grants",
        Lane::Smtp => "smtp",
    };
    // The lane names are a separate SVG of the same width and scale, sticky at the top
    // of the scrolling box, so they stay in view however far the rows go.
    html! {
        <div class="ex-diagram" ref={scroller}>
            <svg class="ex-diagram-head" viewBox={format!("0 0 {WIDTH} {}", HEAD - 8)}
                width="100%" aria-hidden="true" preserveAspectRatio="xMidYMin meet">
                { for props.lanes.iter().map(|(lane, label, sub)| {
                    let x = x_of(*lane);
                    let kind = kind_of(lane);
                    html! {
                        <g class={classes!("ex-lane", format!("ex-lane-{kind}"))} data-testid="diagram-lane" data-lane={kind}>
                            <text x={fmt(x)} y="18" text-anchor="middle" class="ex-lane-name">{ label.clone() }</text>
                            <text x={fmt(x)} y="34" text-anchor="middle" class="ex-lane-sub">{ sub.clone() }</text>
                        </g>
                    }
                }) }
            </svg>
            <svg data-testid="diagram" viewBox={format!("0 {} {WIDTH} {}", HEAD - 8, height - HEAD + 8)}
                width="100%" role="img" aria-label={props.lanes.iter().map(|(_, l, _)| l.as_str()).collect::<Vec<_>>().join(" · ")}
                preserveAspectRatio="xMidYMin meet">
                <defs>
                    <marker id="ex-head" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7"
                        markerHeight="7" orient="auto-start-reverse">
                        <path d="M 0 0 L 10 5 L 0 10 z" class="ex-arrowhead" />
                    </marker>
                </defs>
                { for props.lanes.iter().map(|(lane, _, _)| {
                    let x = x_of(*lane);
                    let kind = kind_of(lane);
                    html! {
                        <g class={classes!("ex-lane", format!("ex-lane-{kind}"))}>
                            <line x1={fmt(x)} y1={fmt(HEAD - 6)} x2={fmt(x)} y2={fmt(height)} />
                        </g>
                    }
                }) }
                { for rows }
            </svg>
        </div>
    }
}

fn fmt(v: i32) -> String {
    v.to_string()
}

fn draw_row(row: &Row, y: i32, current: bool, x_of: &dyn Fn(Lane) -> i32) -> Html {
    let (x1, x2) = (x_of(row.from), x_of(row.to));
    let step = (row.step + 1).to_string();
    let cur = current.to_string();
    let class = |kind: &str| classes!("ex-row", format!("ex-{kind}"), current.then_some("current"));
    match &row.kind {
        RowKind::Clock => html! {
            <g class={class("clock")} data-testid="diagram-arrow" data-kind="clock" data-step={step} data-current={cur}>
                <line x1="30" y1={fmt(y - 4)} x2={fmt(WIDTH - 10)} y2={fmt(y - 4)} />
                <text x={fmt(WIDTH / 2)} y={fmt(y - 8)} text-anchor="middle">{ row.label.clone() }</text>
            </g>
        },
        RowKind::Expired => {
            // Wide enough for the label (about 7 units a character at this size).
            let half = i32::try_from(row.label.chars().count()).unwrap_or(40) * 7 / 2 + 8;
            html! {
            <g class={class("expired")} data-testid="diagram-arrow" data-kind="expired" data-step={step} data-current={cur}>
                <rect x={fmt(x1 - half)} y={fmt(y - 17)} width={fmt(2 * half)} height="20" rx="4" />
                <text x={fmt(x1)} y={fmt(y - 3)} text-anchor="middle">{ row.label.clone() }</text>
            </g>
            }
        }
        RowKind::Connection { open, conn } => {
            let kind = if *open { "connect" } else { "disconnect" };
            html! {
                <g class={class(kind)} data-testid="diagram-arrow" data-kind={kind} data-step={step}
                    data-current={cur} data-conn={conn.0.to_string()}>
                    <line x1={fmt(x1)} y1={fmt(y)} x2={fmt(x2)} y2={fmt(y)} marker-end="url(#ex-head)" />
                    <text x={fmt((x1 + x2) / 2)} y={fmt(y - 5)} text-anchor="middle">{ row.label.clone() }</text>
                </g>
            }
        }
        RowKind::Wire {
            from_client,
            conn,
            lines,
        } => {
            let dir = if *from_client { "client" } else { "server" };
            let tip = lines.join("\n");
            html! {
                <g class={class(&format!("wire-{dir}"))} data-testid="diagram-arrow" data-kind="wire"
                    data-dir={dir} data-step={step} data-current={cur} data-conn={conn.0.to_string()}>
                    <title>{ tip }</title>
                    <line x1={fmt(x1)} y1={fmt(y)} x2={fmt(x2)} y2={fmt(y)} marker-end="url(#ex-head)" />
                    <text x={fmt((x1 + x2) / 2)} y={fmt(y - 5)} text-anchor="middle" class="mono">{ row.label.clone() }</text>
                </g>
            }
        }
        RowKind::Grant { call, ok } => {
            // The question above the arrow, the table's answer below it.
            let (question, answer) = row.label.split_once(" → ").unwrap_or((&row.label, ""));
            html! {
                <g class={classes!(class("grant"), (!ok).then_some("refused"))} data-testid="diagram-arrow"
                    data-kind="grant" data-call={*call} data-ok={ok.to_string()} data-step={step} data-current={cur}>
                    <title>{ row.label.clone() }</title>
                    <line x1={fmt(x1)} y1={fmt(y)} x2={fmt(x2)} y2={fmt(y)} marker-end="url(#ex-head)" />
                    <text x={fmt((x1 + x2) / 2)} y={fmt(y - 5)} text-anchor="middle">{ question.to_owned() }</text>
                    <text x={fmt((x1 + x2) / 2)} y={fmt(y + 11)} text-anchor="middle" class="answer">{ format!("→ {answer}") }</text>
                </g>
            }
        }
    }
}

/// The current step's wire lines, each explained. Annotating needs what each
/// connection said before, so every line so far goes through its connection's context.
pub fn explained_lines(s: &Strings, e: &Explainer) -> Vec<(SimOutput, Option<Annotation>)> {
    let mut contexts: BTreeMap<ConnId, LineContext> = BTreeMap::new();
    let current = e.position().checked_sub(1);
    let mut out = Vec::new();
    for (step, outputs) in e.step_outputs().iter().enumerate() {
        for o in outputs {
            if let SimOutput::Wire {
                conn,
                endpoint,
                from_client,
                text,
                ..
            } = o
            {
                let a = contexts.entry(*conn).or_default().annotate(
                    s,
                    endpoint.protocol(),
                    *from_client,
                    text,
                );
                if Some(step) == current {
                    out.push((o.clone(), a));
                }
            }
        }
    }
    out
}

fn step_lines(s: &Strings, e: &Explainer) -> Html {
    let lines = explained_lines(s, e);
    if lines.is_empty() {
        return html! { <p class="empty" data-testid="ex-lines-empty">{ s.ex_lines_empty }</p> };
    }
    html! {
        <ol class="ex-lines" data-testid="ex-lines">
            { for lines.into_iter().map(|(o, a)| {
                let SimOutput::Wire { from_client, text, conn, .. } = o else { return html! {} };
                let (dir, who) = if from_client { ("client", s.client_label) } else { ("server", s.server_label) };
                html! {
                    <li class={classes!("ex-line", dir)} data-testid="ex-line" data-dir={dir}
                        data-conn={conn.0.to_string()}
                        data-annotation={a.as_ref().map(|a| a.key)}>
                        <div class="line">
                            <span class="who">{ who }</span>
                            <span class="text">{ text }</span>
                        </div>
                        if let Some(a) = a {
                            <div class="ex-annotation" data-testid="ex-annotation">
                                <span class="meaning">{ a.meaning }</span>
                                if !a.rfc.is_empty() {
                                    <span class="rfc" data-testid="ex-rfc">{ a.rfc }</span>
                                }
                            </div>
                        }
                    </li>
                }
            }) }
        </ol>
    }
}

fn free_play(s: &Strings, e: &Explainer, on_act: &Callback<Act>) -> Html {
    let lang = e.lang.tag();
    let conns: Vec<ConnInfo> = e.connections();
    let sim = e.player().sim();
    html! {
        <section class="panel ex-free" data-testid="free-play" aria-labelledby="ex-free-title">
            <h2 id="ex-free-title">{ s.ex_free_title }</h2>
            <p class="hint">{ s.ex_free_hint }</p>
            { for conns.iter().filter(|c| c.id.is_some()).map(|c| {
                let open = c.id.is_some_and(|id| sim.is_open(id));
                let client = e.scenario().clients.get(c.client).map(|cl| cl.label.get(lang).to_owned()).unwrap_or_default();
                html! {
                    <FreeConn key={c.name.clone()} name={c.name.clone()}
                        label={format!("{} → {}", client, endpoint_name(c.endpoint))}
                        {open} on_act={on_act.clone()} />
                }
            }) }
            <div class="ex-free-clock">
                { for [5u64, 30].iter().map(|&minutes| {
                    let onclick = on_act.reform(move |_: MouseEvent| Act::Advance { minutes });
                    html! {
                        <button type="button" data-testid="free-advance" data-minutes={minutes.to_string()} {onclick}>
                            { fill(s.ex_advance_by, &[("minutes", &minutes.to_string())]) }
                        </button>
                    }
                }) }
            </div>
        </section>
    }
}

#[derive(Properties, PartialEq)]
struct FreeConnProps {
    name: String,
    label: String,
    open: bool,
    on_act: Callback<Act>,
}

/// One connection of free play: a line to type and send (Enter sends).
#[function_component(FreeConn)]
fn free_conn(props: &FreeConnProps) -> Html {
    let s = crate::components::use_strings();
    let input = use_node_ref();
    let onsubmit = {
        let input = input.clone();
        let name = props.name.clone();
        let on_act = props.on_act.clone();
        Callback::from(move |ev: SubmitEvent| {
            ev.prevent_default();
            let Some(field) = input.cast::<web_sys::HtmlInputElement>() else {
                return;
            };
            let line = field.value();
            field.set_value("");
            on_act.emit(Act::Type {
                conn: name.clone(),
                line,
            });
        })
    };
    let reconnect = {
        let name = props.name.clone();
        props
            .on_act
            .reform(move |_: MouseEvent| Act::Reconnect(name.clone()))
    };
    html! {
        <form class="ex-free-conn" data-testid="free-conn" data-conn={props.name.clone()}
            data-open={props.open.to_string()} {onsubmit}>
            <label>
                <span class="muted">{ props.label.clone() }</span>
                <input ref={input} type="text" class="mono" data-testid="free-input" autocomplete="off"
                    spellcheck="false" placeholder={s.ex_free_placeholder} disabled={!props.open} />
            </label>
            if props.open {
                <button type="submit" data-testid="free-send">{ s.ex_send }</button>
            } else {
                <span class="muted">{ s.state_closed }</span>
                <button type="button" data-testid="free-reconnect" onclick={reconnect}>{ s.ex_reconnect }</button>
            }
        </form>
    }
}
