//! Entry point of the web app: trunk builds this binary for wasm32 and loads it from
//! `index.html`.

#[cfg(target_arch = "wasm32")]
fn main() {
    // The dashboard or the explainer, as the page's URL asks; nothing on a host page
    // that mounts the app itself with the exported `mount`.
    popgate_web::embed::start();
}

// A native build exists only so the whole workspace checks on the host; there is no page
// to render there.
#[cfg(not(target_arch = "wasm32"))]
fn main() {
    eprintln!("popgate-web is a WebAssembly app: build it with `trunk build` (see README.md)");
}
