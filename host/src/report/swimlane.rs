//! A story's timeline as inline SVG: one row per role (SM, Dev, QA, gates), each agent call and
//! gate run a bar from its intent to its result (hatched when it has no result: interrupted, or
//! in progress), with its attempt (`a2`: redone after an interruption) and process retries
//! (`r1`: transient failures retried) above it, a red outline when its end was not proven, and
//! markers for send-backs (▼), escalations and failures (◆) and teardown records (✕). Every
//! shape carries the step's id and `data-*` attributes, and a `<title>` for the tooltip.

use std::fmt::Write;
use std::time::{Duration, SystemTime};

use super::escape::Esc;
use super::figures::{clock, money};
use super::model::{Item, ItemKind, ItemState, Lane, LaneSpan, RunLane, StoryView, span};

const WIDTH: f64 = 960.0;
const LABEL: f64 = 52.0;
const RIGHT: f64 = 10.0;
const TOP: f64 = 18.0;
const LANE: f64 = 24.0;
const BAR: f64 = 14.0;

/// The SVG of `story`'s timeline; `bound` is where a step with no result ends on the picture
/// when its transcript does not tell (the run's end, or the time the journal was read).
pub(super) fn draw(out: &mut String, story: &StoryView, bound: SystemTime) {
    let height = TOP + LANE * Lane::ALL.len() as f64 + 4.0;
    let start = story
        .items
        .iter()
        .flat_map(|i| std::iter::once(i.start).chain(i.earlier.iter().filter_map(|a| a.start)))
        .min();
    let Some(t0) = start else {
        return;
    };
    let drawn_end = |i: &Item| i.end.or(i.last_seen).unwrap_or(bound).max(i.start);
    let t1 = story.items.iter().map(drawn_end).max().unwrap_or(t0);
    let total = t1
        .duration_since(t0)
        .unwrap_or_default()
        .max(Duration::from_millis(1));
    let plot = WIDTH - LABEL - RIGHT;
    let x = |t: SystemTime| {
        let d = t.duration_since(t0).unwrap_or_default();
        LABEL + plot * d.as_secs_f64() / total.as_secs_f64()
    };
    let _ = write!(
        out,
        "<svg class=\"lanes\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {WIDTH} {height}\" \
         role=\"img\" aria-label=\"timeline of story {id}\" data-story=\"{id}\" \
         data-span-ms=\"{span}\">",
        id = Esc(&story.id),
        span = total.as_millis()
    );
    // The time axis: start, quarters, end.
    for q in 0..=4u32 {
        let frac = f64::from(q) / 4.0;
        let tx = LABEL + plot * frac;
        let anchor = match q {
            0 => "start",
            4 => "end",
            _ => "middle",
        };
        let _ = write!(
            out,
            "<line class=\"tick\" x1=\"{tx:.1}\" y1=\"{TOP}\" x2=\"{tx:.1}\" y2=\"{:.1}\"/>\
             <text class=\"axis\" x=\"{tx:.1}\" y=\"12\" text-anchor=\"{anchor}\">{}</text>",
            height - 4.0,
            clock(total.mul_f64(frac))
        );
    }
    for (row, lane) in Lane::ALL.iter().enumerate() {
        let y = TOP + LANE * row as f64;
        let _ = write!(
            out,
            "<g class=\"lane\" data-lane=\"{name}\"><rect class=\"band\" x=\"0\" y=\"{y:.1}\" \
             width=\"{WIDTH}\" height=\"{LANE}\"/><text class=\"role\" x=\"4\" y=\"{:.1}\">{name}</text>",
            y + LANE / 2.0 + 4.0,
            name = lane.name()
        );
        for item in story.items.iter().filter(|i| i.lane == *lane) {
            earlier(out, item, y, &x);
            shape(out, item, y, x(item.start), x(drawn_end(item)));
        }
        out.push_str("</g>");
    }
    out.push_str("</svg>");
}

/// The SVG of a parallel run's lanes: one row per lane (`lane 1`, ..., then `integration`),
/// each story it held a bar from when the lane took it to when it let it go, labelled with the
/// story's id; `bound` ends a bar with no result.
pub(super) fn draw_lanes(out: &mut String, lanes: &[RunLane], bound: SystemTime) {
    let spans = || lanes.iter().flat_map(|l| l.spans.iter());
    let Some(t0) = spans().map(|s| s.start).min() else {
        return;
    };
    let drawn_end = |s: &LaneSpan| s.end.unwrap_or(bound).max(s.start);
    let t1 = spans().map(drawn_end).max().unwrap_or(t0);
    let total = t1
        .duration_since(t0)
        .unwrap_or_default()
        .max(Duration::from_millis(1));
    let height = TOP + LANE * lanes.len() as f64 + 4.0;
    let label = LABEL + 28.0;
    let plot = WIDTH - label - RIGHT;
    let x = |t: SystemTime| {
        let d = t.duration_since(t0).unwrap_or_default();
        label + plot * d.as_secs_f64() / total.as_secs_f64()
    };
    let _ = write!(
        out,
        "<svg class=\"lanes run-lanes\" xmlns=\"http://www.w3.org/2000/svg\" \
         viewBox=\"0 0 {WIDTH} {height}\" role=\"img\" aria-label=\"the run's lanes\" \
         data-span-ms=\"{span}\">",
        span = total.as_millis()
    );
    for q in 0..=4u32 {
        let frac = f64::from(q) / 4.0;
        let tx = label + plot * frac;
        let anchor = match q {
            0 => "start",
            4 => "end",
            _ => "middle",
        };
        let _ = write!(
            out,
            "<line class=\"tick\" x1=\"{tx:.1}\" y1=\"{TOP}\" x2=\"{tx:.1}\" y2=\"{:.1}\"/>\
             <text class=\"axis\" x=\"{tx:.1}\" y=\"12\" text-anchor=\"{anchor}\">{}</text>",
            height - 4.0,
            clock(total.mul_f64(frac))
        );
    }
    for (row, lane) in lanes.iter().enumerate() {
        let y = TOP + LANE * row as f64;
        let title = match lane.name.parse::<u32>() {
            Ok(n) => format!("lane {n}"),
            Err(_) => lane.name.clone(),
        };
        let _ = write!(
            out,
            "<g class=\"lane\" data-run-lane=\"{name}\"><rect class=\"band\" x=\"0\" y=\"{y:.1}\" \
             width=\"{WIDTH}\" height=\"{LANE}\"/><text class=\"role\" x=\"4\" y=\"{:.1}\">{title}</text>",
            y + LANE / 2.0 + 4.0,
            name = Esc(&lane.name),
            title = Esc(&title),
        );
        let mid = y + LANE / 2.0;
        for s in &lane.spans {
            let (x0, x1) = (x(s.start), x(drawn_end(s)));
            let w = (x1 - x0).max(2.0);
            let mut tip = format!("story {} · {}", s.story, s.outcome);
            match s.end {
                Some(end) => tip.push_str(&format!(
                    " · {}",
                    clock(end.duration_since(s.start).unwrap_or_default())
                )),
                None => tip.push_str(" · no result"),
            }
            if !s.detail.is_empty() {
                tip.push_str(&format!(" · {}", s.detail));
            }
            let _ = write!(
                out,
                "<rect class=\"lane-span s-{state}\" id=\"ln-{step}\" data-step=\"{step}\" \
                 data-story=\"{story}\" data-lane=\"{lane}\" data-work=\"{work}\" \
                 data-state=\"{state}\" data-outcome=\"{outcome}\" data-start=\"{start}\"{end} \
                 x=\"{x0:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{BAR}\" rx=\"2\">\
                 <title>{}</title></rect>",
                mid - BAR / 2.0,
                Esc(&tip),
                step = s.step,
                story = Esc(&s.story),
                lane = s.lane,
                work = match s.work {
                    crate::journal::LaneWork::Drive => "drive",
                    crate::journal::LaneWork::Integrate => "integrate",
                },
                state = s.state.name(),
                outcome = Esc(&s.outcome),
                start = super::figures::stamp(s.start),
                end = s
                    .end
                    .map(|e| format!(" data-end=\"{}\"", super::figures::stamp(e)))
                    .unwrap_or_default(),
            );
            if w >= 24.0 {
                let _ = write!(
                    out,
                    "<text class=\"span-label\" x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                    x0 + 3.0,
                    mid + 4.0,
                    Esc(&s.story)
                );
            }
        }
        out.push_str("</g>");
    }
    out.push_str("</svg>");
}

fn shape(out: &mut String, item: &Item, lane_y: f64, x0: f64, x1: f64) {
    let mid = lane_y + LANE / 2.0;
    let attrs = format!(
        "id=\"tl-{step}\" data-step=\"{step}\" data-kind=\"{kind}\" data-state=\"{state}\" \
         data-cycle=\"{cycle}\" data-attempt=\"{attempt}\"",
        step = item.step,
        kind = item.kind.name(),
        state = item.state.name(),
        cycle = item.cycle,
        attempt = item.attempt,
    );
    let title = tooltip(item);
    let class = format!(
        "{} s-{}{}",
        item.kind.name(),
        item.state.name(),
        if item.clean { "" } else { " unclean" }
    );
    match item.kind {
        ItemKind::AgentCall | ItemKind::Gates => {
            let w = (x1 - x0).max(2.0);
            let _ = write!(
                out,
                "<rect class=\"{class}\" {attrs} x=\"{x0:.1}\" y=\"{:.1}\" width=\"{w:.1}\" \
                 height=\"{BAR}\" rx=\"2\"><title>{}</title></rect>",
                mid - BAR / 2.0,
                Esc(&title)
            );
            let mut badge = String::new();
            if item.attempt > 1 {
                badge.push_str(&format!("a{}", item.attempt));
            }
            if item.processes > 1 {
                if !badge.is_empty() {
                    badge.push(' ');
                }
                badge.push_str(&format!("r{}", item.processes - 1));
            }
            if !badge.is_empty() {
                let _ = write!(
                    out,
                    "<text class=\"badge\" x=\"{:.1}\" y=\"{:.1}\">{badge}</text>",
                    x0 + 1.0,
                    mid - BAR / 2.0 - 1.0
                );
            }
        }
        ItemKind::SendBack => {
            let _ = write!(
                out,
                "<path class=\"{class}\" {attrs} d=\"M{:.1} {:.1}h10l-5 9z\"><title>{}</title></path>",
                x0 - 5.0,
                mid - 4.0,
                Esc(&title)
            );
        }
        ItemKind::Escalate | ItemKind::Fail => {
            let _ = write!(
                out,
                "<path class=\"{class}\" {attrs} d=\"M{x0:.1} {:.1}l6 6l-6 6l-6 -6z\"><title>{}</title></path>",
                mid - 6.0,
                Esc(&title)
            );
        }
        ItemKind::Teardown => {
            let _ = write!(
                out,
                "<path class=\"{class}\" {attrs} d=\"M{:.1} {:.1}l10 10m0 -10l-10 10\"><title>{}</title></path>",
                x0 - 5.0,
                mid - 5.0,
                Esc(&title)
            );
        }
    }
}

/// The attempts of a call before the journaled one: a thin bar each, and after one that hit a
/// usage limit, a dashed line over the wait until the next attempt started.
fn earlier(out: &mut String, item: &Item, lane_y: f64, x: &dyn Fn(SystemTime) -> f64) {
    let mid = lane_y + LANE / 2.0;
    for (k, a) in item.earlier.iter().enumerate() {
        let (Some(start), Some(end)) = (a.start, a.end) else {
            continue;
        };
        let limited = a.outcome.as_deref() == Some("usage-limit");
        let state = if limited {
            "usage-limit"
        } else {
            "interrupted"
        };
        let (x0, x1) = (x(start), x(end.max(start)));
        let _ = write!(
            out,
            "<rect class=\"attempt s-{state}\" id=\"tl-{step}-a{n}\" data-step=\"{step}\" \
             data-attempt=\"{n}\" data-state=\"{state}\" x=\"{x0:.1}\" y=\"{:.1}\" \
             width=\"{:.1}\" height=\"6\"><title>{} · cycle {} · attempt {n}: {}</title></rect>",
            mid - 3.0,
            (x1 - x0).max(2.0),
            item.lane.name(),
            item.cycle,
            Esc(a.outcome.as_deref().unwrap_or("cut off")),
            step = item.step,
            n = a.n,
        );
        if limited {
            let next = item
                .earlier
                .get(k + 1)
                .and_then(|b| b.start)
                .unwrap_or(item.start);
            let xn = x(next.max(end));
            let _ = write!(
                out,
                "<line class=\"wait\" id=\"wait-{step}-a{n}\" data-step=\"{step}\" \
                 data-attempt=\"{n}\" x1=\"{x1:.1}\" y1=\"{mid:.1}\" x2=\"{xn:.1}\" y2=\"{mid:.1}\">\
                 <title>waited for the usage limit to reset: {}</title></line>\
                 <text class=\"wait-label\" x=\"{:.1}\" y=\"{:.1}\">limit wait</text>",
                clock(next.duration_since(end).unwrap_or_default()),
                x1 + 2.0,
                mid - 4.0,
                step = item.step,
                n = a.n,
            );
        }
    }
}

/// The tooltip: role, cycle, outcome, duration, cost, attempt.
fn tooltip(item: &Item) -> String {
    let mut t = format!(
        "{} · cycle {} · {}",
        item.lane.name(),
        item.cycle,
        item.outcome
    );
    if !item.kind.is_marker() {
        match item.end {
            Some(_) => t.push_str(&format!(" · {}", clock(span(item)))),
            None if item.state == ItemState::Open => t.push_str(" · no result yet"),
            None => t.push_str(" · no result"),
        }
    }
    if let Some(cost) = item.cost_usd {
        t.push_str(&format!(" · {}", money(cost)));
    }
    if item.attempt > 1 {
        t.push_str(&format!(" · attempt {}", item.attempt));
    }
    if item.processes > 1 {
        t.push_str(&format!(" · {} processes", item.processes));
    }
    if !item.clean {
        t.push_str(" · end not proven");
    }
    t
}
