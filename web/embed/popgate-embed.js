// Mounts the popgate explainer into an element of your page:
//
//   <div id="explainer"></div>
//   <script type="module">
//     import { mount } from "https://docs.example/popgate/embed/popgate-embed.js";
//     mount(document.getElementById("explainer"), { mode: "explainer", lang: "ja", scenario: 2, step: 3 });
//   </script>
//
// The app's files carry content hashes in their names (popgate-web-<hash>.js), so this
// loader reads them from the index.html beside it, loads the WebAssembly module once,
// and calls the module's own `mount(element, options)` for each element. Options:
// mode ("explainer" | "live"), lang ("en" | "ja"; default: the browser's), scenario
// (a number from 1, or an id such as "pop-then-relay"), step (steps already played),
// theme ("light" | "dark"; default: the system's). Nothing but the app's own files is
// requested.

const app = new URL("../index.html", import.meta.url);
let loading;

function load() {
  loading ??= (async () => {
    const response = await fetch(app);
    if (!response.ok) throw new Error(`popgate: ${app} answered ${response.status}`);
    const page = new DOMParser().parseFromString(await response.text(), "text/html");
    const href = (selector) => {
      const link = page.querySelector(selector);
      if (!link) throw new Error(`popgate: ${app} has no ${selector}`);
      return new URL(link.getAttribute("href"), app).href;
    };
    const module = await import(href('link[rel="modulepreload"]'));
    await module.default({ module_or_path: href('link[rel="preload"][as="fetch"]') });
    return { module, stylesheet: href('link[rel="stylesheet"]') };
  })();
  return loading;
}

export async function mount(element, options = {}) {
  const { module, stylesheet } = await load();
  module.mount(element, { stylesheet, ...options });
}
