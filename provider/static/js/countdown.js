// The contacts step's "new code in N seconds": counted down where JavaScript runs, then
// the "Send a new code" button shown in its place. Without JavaScript the page says to
// reload it after the wait (a plain link), and the server shows the button then.
(function () {
  "use strict";
  var waits = document.querySelectorAll("[data-countdown]");
  Array.prototype.forEach.call(waits, function (wait) {
    var deadline = Date.now() + parseInt(wait.getAttribute("data-countdown"), 10) * 1000;
    var text = wait.querySelector(".resend-wait__text");
    var reload = wait.querySelector(".resend-wait__reload");
    var button = document.getElementById(wait.getAttribute("data-reveal"));
    var one = wait.getAttribute("data-one");
    var other = wait.getAttribute("data-other");
    if (reload) { reload.hidden = true; }  // the button will come by itself
    function tick() {
      var left = Math.ceil((deadline - Date.now()) / 1000);
      if (left <= 0) {
        wait.hidden = true;
        if (button) { button.hidden = false; }
        return;
      }
      text.textContent = left === 1 ? one : other.replace("{n}", String(left));
      setTimeout(tick, ((deadline - Date.now()) % 1000 || 1000) + 20);  // next whole second
    }
    tick();
  });
})();
