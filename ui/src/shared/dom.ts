// Every element is built with createElement and every string goes in as a text node: transcripts, explanations
// and prompts are untrusted (a caller's words, a judge's output), so nothing here ever parses text as HTML.

export type Child = Node | string | number | null | undefined | false;

export interface Props {
  class?: string;
  testid?: string;
  attrs?: Record<string, string | undefined>;
  on?: Partial<{ [K in keyof HTMLElementEventMap]: (event: HTMLElementEventMap[K]) => void }>;
}

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Props = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  if (props.class) element.className = props.class;
  if (props.testid) element.dataset.testid = props.testid;
  for (const [name, value] of Object.entries(props.attrs ?? {})) {
    if (value !== undefined) element.setAttribute(name, value);
  }
  for (const [event, handler] of Object.entries(props.on ?? {})) {
    element.addEventListener(event, handler as EventListener);
  }
  append(element, children);
  return element;
}

export function append(parent: Node, children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    parent.appendChild(typeof child === "string" || typeof child === "number" ? document.createTextNode(String(child)) : child);
  }
}

export function replace(parent: Element, ...children: Child[]): void {
  parent.replaceChildren();
  append(parent, children);
}

export function button(label: string, testid: string, onClick: () => void, extra: Props = {}): HTMLButtonElement {
  return h("button", { ...extra, testid, attrs: { type: "button", ...(extra.attrs ?? {}) }, on: { click: onClick } }, label);
}

export function percent(share: number | null | undefined): string {
  return typeof share === "number" ? `${Math.round(share * 100)}%` : "–";
}

export function signed(value: number | null | undefined, digits = 2): string {
  if (typeof value !== "number") return "–";
  return (value >= 0 ? "+" : "") + value.toFixed(digits);
}

/** "9101: One Question Per Turn" -> 9101 (the servers' `metric` fields name the id first). */
export function leadingId(label: string | null | undefined): number | undefined {
  const match = /^(\d+)\s*:/.exec(label ?? "");
  return match ? Number(match[1]) : undefined;
}
