// The dashboard's few behaviours, as listeners on the document (so they also
// work in fragments htmx swaps in).  No inline handlers: the
// Content-Security-Policy runs only scripts served from here.
//   <select data-submit-on-change>          submits its form when changed
//   <button data-open-all="SELECTOR">       opens every <details> SELECTOR matches
//   <button data-close-all="SELECTOR">      closes them
(function () {
  "use strict";
  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target instanceof HTMLSelectElement && target.hasAttribute("data-submit-on-change") && target.form) {
      target.form.submit();
    }
  });
  document.addEventListener("click", function (event) {
    var button = event.target instanceof Element ? event.target.closest("[data-open-all], [data-close-all]") : null;
    if (!button) {
      return;
    }
    var open = button.hasAttribute("data-open-all");
    var selector = button.getAttribute(open ? "data-open-all" : "data-close-all");
    document.querySelectorAll(selector).forEach(function (details) {
      details.open = open;
    });
  });
})();
