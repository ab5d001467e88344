/* dualface_lite book: MathJax 2 "Hub" shim for the Jupyter widget manager.
 *
 * @jupyter-widgets/controls typesets widget labels with the MathJax 2 API,
 *   MathJax.Hub.Queue(["Typeset", MathJax.Hub, element])
 * whenever window.MathJax exists. The book uses MathJax 3, which has no Hub, so every page with
 * an equation and a widget threw "Cannot read properties of undefined (reading 'Queue')".
 * This script (loaded before any MathJax config or widget script) keeps a small Hub on whatever
 * object window.MathJax is (Sphinx's config object, then MathJax 3 itself, which replaces it)
 * and forwards "Typeset" requests to MathJax 3's typesetPromise once MathJax is ready.
 */
(function () {
  "use strict";
  var pending = [];

  function ready() {
    var M = window.MathJax;
    return M && M.startup && M.startup.promise && typeof M.typesetPromise === "function" ? M : null;
  }

  function flush() {
    var M = ready();
    if (!M || !pending.length) return;
    var elements = pending.splice(0, pending.length);
    M.startup.promise
      .then(function () { return M.typesetPromise(elements); })
      .catch(function (err) { console.warn("MathJax could not typeset widget text:", err); });
  }

  var Hub = {
    Queue: function () {
      for (var i = 0; i < arguments.length; i++) {
        var job = arguments[i];
        if (Array.isArray(job) && job[0] === "Typeset") {
          pending.push(job[2] instanceof Element ? job[2] : document.body);
        } else if (typeof job === "function") {
          try { job(); } catch (err) { console.warn(err); }
        }
      }
      flush();
    }
  };

  function attach(obj) {
    if (obj && typeof obj === "object" && !("Hub" in obj)) {
      Object.defineProperty(obj, "Hub", { value: Hub, configurable: true, writable: true, enumerable: false });
    }
  }

  var current = window.MathJax;
  attach(current);
  try {
    Object.defineProperty(window, "MathJax", {
      configurable: true,
      enumerable: true,
      get: function () { return current; },
      set: function (value) { current = value; attach(value); }
    });
  } catch (err) {
    /* window.MathJax not redefinable: leave things as they are */
  }
  window.addEventListener("load", function () {
    var M = ready();
    if (M) M.startup.promise.then(flush);
  });
})();
