/**
 * Menus and questions. A popup menu of actions (a message's, a member's): opened by its ⋯ button,
 * role="menu", arrow keys move between items, Escape or Tab closes it and focus goes back to the
 * button. The question dialog (a native modal <dialog>: the rest of the page is inert while it
 * is open) asks before what cannot be undone: a deletion, a kick, a ban, signing out.
 */

import { h } from "./dom.ts";
import type { Ui } from "./elements.ts";

/** Space kept between a menu and its button, and the edges of the window. */
const MENU_GAP_PX = 4;
const EDGE_PX = 8;

export interface MenuItem {
  label: string;
  run(): void;
  /** Drawn as a destructive action. */
  danger?: boolean;
}

/** The open menu, if any: one at a time. */
let openMenu: { menu: HTMLElement; trigger: HTMLElement } | null = null;

/** Closes the open menu; `refocus` gives focus back to its button. */
export function closeMenu(refocus = false): void {
  const was = openMenu;
  if (!was) return;
  openMenu = null;
  was.menu.remove();
  was.trigger.setAttribute("aria-expanded", "false");
  document.removeEventListener("pointerdown", outside, true);
  if (refocus && was.trigger.isConnected) was.trigger.focus();
}

function outside(event: Event): void {
  if (openMenu && !openMenu.menu.contains(event.target as Node) && event.target !== openMenu.trigger) closeMenu();
}

/** Opens a menu of `items` below (or above) `trigger`, with focus on its first item; a second click closes it. */
export function showMenu(trigger: HTMLElement, label: string, items: readonly MenuItem[]): void {
  const same = openMenu?.trigger === trigger;
  closeMenu();
  if (same || items.length === 0) return;
  const buttons = items.map((item) =>
    h("button", { class: item.danger ? "menu-item danger" : "menu-item", text: item.label, attrs: { type: "button", role: "menuitem", tabindex: "-1" } }),
  );
  const menu = h("div", { class: "menu", attrs: { role: "menu", "aria-label": label } }, ...buttons);
  buttons.forEach((button, i) =>
    button.addEventListener("click", () => {
      closeMenu(true);
      items[i]!.run();
    }),
  );
  menu.addEventListener("keydown", (event) => {
    const at = buttons.indexOf(document.activeElement as HTMLButtonElement);
    const to = { ArrowDown: at + 1, ArrowUp: at - 1, Home: 0, End: buttons.length - 1 }[event.key];
    if (to !== undefined) {
      event.preventDefault();
      buttons[(to + buttons.length) % buttons.length]!.focus();
    } else if (event.key === "Escape" || event.key === "Tab") {
      event.preventDefault();
      event.stopPropagation();
      closeMenu(true);
    }
  });
  document.body.append(menu);
  place(menu, trigger);
  trigger.setAttribute("aria-expanded", "true");
  openMenu = { menu, trigger };
  document.addEventListener("pointerdown", outside, true);
  buttons[0]!.focus();
}

/** Puts the menu under its button, right-aligned with it, or above it when there is no room below. */
function place(menu: HTMLElement, trigger: HTMLElement): void {
  const at = trigger.getBoundingClientRect();
  const { offsetWidth: width, offsetHeight: height } = menu;
  const below = at.bottom + MENU_GAP_PX;
  const top = below + height > window.innerHeight - EDGE_PX ? Math.max(EDGE_PX, at.top - MENU_GAP_PX - height) : below;
  const left = Math.min(Math.max(EDGE_PX, at.right - width), window.innerWidth - width - EDGE_PX);
  // CSSOM, not a style attribute: allowed by the page's CSP.
  menu.style.top = `${top}px`;
  menu.style.left = `${left}px`;
}

/** What to ask: a title, what will happen, the confirming button's label, and optional fields. */
export interface Question {
  title: string;
  text: string;
  ok: string;
  /** Ask for an optional reason. */
  reason?: boolean;
  /** Ask for how long (a ban): seconds, or none for "until unbanned". */
  length?: boolean;
  /** Ask for a secret (an admin token), in a password field with this label. */
  secret?: string;
}

/** The answer to a yes: the reason typed ("" for none) and the length chosen (null: until unbanned). */
export interface Answer {
  reason: string;
  seconds: number | null;
  /** The secret typed ("" when none was asked); the dialog keeps no copy. */
  secret: string;
}

export type Ask = (question: Question) => Promise<Answer | null>;

/** The question dialog of index.html: `ask` resolves with the answer, or null when cancelled. */
export function createAsk(ui: Ui): Ask {
  let answer: ((value: Answer | null) => void) | null = null;

  const finish = (value: Answer | null) => {
    const resolve = answer;
    answer = null;
    if (ui.askDialog.open) ui.askDialog.close();
    ui.askSecret.value = "";
    resolve?.(value);
  };
  ui.askForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const seconds = ui.askLength.value === "" ? null : Number(ui.askLength.value);
    finish({ reason: ui.askReason.value.trim(), seconds, secret: ui.askSecret.value });
  });
  ui.askCancel.addEventListener("click", () => finish(null));
  // Escape closes a modal dialog by itself: that is a no.
  ui.askDialog.addEventListener("close", () => finish(null));

  return (question) => {
    // One question at a time (the modal dialog keeps the page from asking another meanwhile).
    if (answer) return Promise.resolve(null);
    ui.askTitle.textContent = question.title;
    ui.askText.textContent = question.text;
    ui.askOk.textContent = question.ok;
    ui.askReasonRow.hidden = !question.reason;
    ui.askReason.value = "";
    ui.askSecretRow.hidden = question.secret === undefined;
    ui.askSecretLabel.textContent = question.secret ?? "";
    ui.askLengthRow.hidden = !question.length;
    ui.askLength.selectedIndex = 0;
    const asked = new Promise<Answer | null>((resolve) => (answer = resolve));
    ui.askDialog.showModal();
    // The safe choice has focus: Enter on a question about deleting does not delete.
    (question.secret !== undefined ? ui.askSecret : question.reason ? ui.askReason : ui.askCancel).focus();
    return asked;
  };
}
