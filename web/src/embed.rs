//! Starting the app in a page (browser only): from the page's own URL when it is
//! `index.html`, or from a host page through the exported JS `mount(element, options)`.
//!
//! `index.html` marks its `<body>` with `data-popgate-app`; `main` renders into such a
//! body at once. A host page that loads the module to call `mount` has no such mark,
//! so loading the module renders nothing until `mount` is called (see
//! `web/embed/popgate-embed.js`, which finds the module's hashed file names and calls
//! it).
//!
//! `mount` renders inside a shadow root on the element, with the app's stylesheet
//! linked there: the host page's styles do not reach the app and the app's do not
//! reach the page.

use crate::components::app::Root;
use crate::components::app::RootProps;
use crate::explainer::route::{Options, Theme};
use crate::i18n::Lang;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    /// `JSON.stringify`: the options object as JSON, read with serde (no JS glue
    /// beyond this import).
    #[wasm_bindgen(js_namespace = JSON, js_name = stringify, catch)]
    fn json_stringify(value: &JsValue) -> Result<JsValue, JsValue>;
}

/// The attribute of `index.html`'s body that asks `main` to render there.
const AUTO_MOUNT: &str = "data-popgate-app";

fn browser_language() -> Option<String> {
    web_sys::window()?.navigator().language()
}

/// Renders into `index.html`'s body, as its URL asks (`?explainer`, `#/explainer/...`,
/// `lang`, `theme`); does nothing on a host page that will call [`mount`].
pub fn start() {
    let Some(window) = web_sys::window() else {
        return;
    };
    let Some(document) = window.document() else {
        return;
    };
    let Some(body) = document.body() else {
        return;
    };
    if !body.has_attribute(AUTO_MOUNT) {
        return;
    }
    let location = window.location();
    let options = Options::from_url(
        &location.search().unwrap_or_default(),
        &location.hash().unwrap_or_default(),
    );
    let lang = options.language(browser_language().as_deref());
    page_follows(lang, options.theme, "");
    yew::Renderer::<Root>::with_root_and_props(
        body.into(),
        RootProps {
            options,
            lang,
            standalone: true,
        },
    )
    .render();
}

/// The page as a whole follows the app: `<html lang>` (so the browser picks fonts for
/// the language), the theme, and (when `fragment` is not empty) the URL's fragment, so
/// the address bar is a deep link to what is shown.
pub fn page_follows(lang: Lang, theme: Theme, fragment: &str) {
    let Some(window) = web_sys::window() else {
        return;
    };
    if let Some(root) = window.document().and_then(|d| d.document_element()) {
        let _ = root.set_attribute("lang", lang.tag());
        let _ = match theme.attr() {
            Some(t) => root.set_attribute("data-theme", t),
            None => root.remove_attribute("data-theme"),
        };
    }
    if fragment.is_empty() {
        return;
    }
    let location = window.location();
    let search = location.search().unwrap_or_default();
    let url = format!(
        "{}{search}{fragment}",
        location.pathname().unwrap_or_default()
    );
    if let Ok(history) = window.history() {
        // Replace, not push: stepping through a scenario must not fill the history.
        let _ = history.replace_state_with_url(&JsValue::NULL, "", Some(&url));
    }
}

/// Mounts the app into `element` of a host page. `options`: `{mode: "explainer" |
/// "live", lang: "en" | "ja", scenario: 2 | "pop-then-relay", step: 3, theme: "light" |
/// "dark", stylesheet: URL}`, every field optional (the language defaults to the
/// browser's). `stylesheet` is the app's CSS, linked inside the shadow root.
#[wasm_bindgen]
pub fn mount(element: web_sys::Element, options: JsValue) {
    let json = json_stringify(&options)
        .ok()
        .and_then(|v| v.as_string())
        .unwrap_or_default();
    let parsed = Options::from_json(&json);
    let lang = parsed.language(browser_language().as_deref());
    let stylesheet = serde_json::from_str::<serde_json::Value>(&json)
        .ok()
        .and_then(|v| v.get("stylesheet")?.as_str().map(str::to_owned));
    let Some(document) = element.owner_document() else {
        return;
    };
    let root = shadow_root(&document, &element, stylesheet.as_deref()).unwrap_or(element);
    yew::Renderer::<Root>::with_root_and_props(
        root,
        RootProps {
            options: parsed,
            lang,
            standalone: false,
        },
    )
    .render();
}

/// A fresh `<div>` in a new open shadow root of `host`, after a link to `stylesheet`;
/// `None` when the element cannot host one (a `<p>`, or it already has a shadow root):
/// then the app renders into the element itself.
fn shadow_root(
    document: &web_sys::Document,
    host: &web_sys::Element,
    stylesheet: Option<&str>,
) -> Option<web_sys::Element> {
    let shadow = host
        .attach_shadow(&web_sys::ShadowRootInit::new(web_sys::ShadowRootMode::Open))
        .ok()?;
    if let Some(href) = stylesheet {
        let link = document.create_element("link").ok()?;
        link.set_attribute("rel", "stylesheet").ok()?;
        link.set_attribute("href", href).ok()?;
        shadow.append_child(&link).ok()?;
    }
    let div = document.create_element("div").ok()?;
    shadow.append_child(&div).ok()?;
    div.dyn_into::<web_sys::Element>().ok()
}
