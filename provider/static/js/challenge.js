// The identify form's proof-of-work check (provider/guards/challenge.py), solved by the
// vendored ALTCHA widget (provider/static/vendor/altcha/) in a worker from this origin.
// It starts as soon as the student is in the form, and Continue waits for it. Without
// this script the page says plainly how to do without the check.
const widget = document.querySelector("altcha-widget[data-worker]");
if (widget && globalThis.$altcha) {
  const { algorithms, i18n } = globalThis.$altcha;
  algorithms.set("PBKDF2/SHA-256", () => new Worker(widget.dataset.worker));
  // The page's own translations over the widget's English ones.
  i18n.set("umpass", { ...i18n.get("en"), ...JSON.parse(widget.dataset.strings) });
  widget.configure({ language: "umpass" });

  const form = widget.closest("form");
  const start = () => {
    if (widget.getState() === "unverified") widget.verify();
  };
  form.addEventListener("focusin", start, { once: true });
  form.addEventListener("submit", (event) => {
    const state = widget.getState();
    // Solved: send it. Failed or expired: send anyway; the answer brings a new check.
    if (state !== "unverified" && state !== "verifying") return;
    event.preventDefault();
    const submitter = event.submitter;
    widget.addEventListener("verified", () => form.requestSubmit(submitter), { once: true });
    start();
  });
}
