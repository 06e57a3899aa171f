// The console's own script (the CSP allows no inline script): copy
// buttons. Every form works without it.
document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-copy]");
  if (!button) return;
  const source = document.getElementById(button.dataset.copy);
  if (source && navigator.clipboard) {
    navigator.clipboard.writeText(source.textContent).then(() => {
      button.textContent = "Copied";
    });
  }
});
