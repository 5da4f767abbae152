// Bitrix's core script, as far as this demo needs it: it would announce itself and
// report the visit to a counter on another host. Served under the notice, it never runs.
document.title = "core.js ran";
document.documentElement.setAttribute("data-core-ran", "1");
fetch("http://counter.external.example/hit?from=core.js", {mode: "no-cors"});
