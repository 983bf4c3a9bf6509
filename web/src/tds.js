// TDS page behaviour. No inline scripts anywhere (the Content-Security-Policy forbids them):
// whatever a page needs is wired here through data attributes.
document.addEventListener("DOMContentLoaded", () => {
  // Selects that apply themselves (filters).
  document.querySelectorAll("select[data-autosubmit]").forEach((el) => {
    el.addEventListener("change", () => el.form && el.form.requestSubmit());
  });
});
