// Optional live strength meter for the password step. Without JavaScript the page works
// the same: the server explains a refusal on submit. With it, the same server-side
// judgement is shown while typing (debounced), in a polite live region.
(function () {
  "use strict";
  var form = document.querySelector("form[data-strength-url]");
  if (!form || !window.fetch) { return; }
  var input = form.querySelector("#password");
  var meter = document.getElementById("strength-meter");
  var label = document.getElementById("strength-text");
  var token = form.querySelector("input[name=csrf_token]");
  var words = JSON.parse(form.getAttribute("data-strength-words"));
  var timer = null;
  meter.hidden = false;
  function update() {
    var body = new URLSearchParams();
    body.set("password", input.value);
    body.set("csrf_token", token.value);
    fetch(form.getAttribute("data-strength-url"), {
      method: "POST", body: body, credentials: "same-origin",
      headers: { "X-CSRFToken": token.value }
    }).then(function (r) { return r.ok ? r.json() : null; }).then(function (data) {
      if (!data) { return; }
      meter.querySelector("meter").value = data.score;
      label.textContent = input.value ? (words[data.score] + (data.reason ? ". " + data.reason : ".")) : "";
    }).catch(function () { /* the submit still judges; nothing to do */ });
  }
  input.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(update, 350);
  });
})();
