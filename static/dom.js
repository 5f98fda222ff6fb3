// Small DOM helpers shared by the demo page's modules.

/** The element with id `id`. */
export const $ = (id) => document.getElementById(id);

/** A new element with a class and a text. */
export function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}
