// Render the maths that pymdownx.arithmatex (generic mode) leaves in the page:
// `<span class="arithmatex">\(...\)</span>` and `<div class="arithmatex">\[...\]</div>`.
// mkdocs-material's `document$` fires on the first load and again after every
// instant navigation, so maths renders on pages reached without a full reload.
document$.subscribe(({ body }) => {
  for (const element of body.querySelectorAll(".arithmatex")) {
    renderMathInElement(element, {
      delimiters: [
        { left: "\\(", right: "\\)", display: false },
        { left: "\\[", right: "\\]", display: true },
      ],
      throwOnError: false,
    });
  }
});
