/**
 * The connection badge: a small pill in a corner. It fades once the link has been up for a while (a
 * kiosk should show its content, not its plumbing) and comes back with a count-down when the link drops.
 */

/** How long the badge stays fully visible after connecting, in ms. */
const QUIET_AFTER = 4000;

export type LinkState = "connecting" | "connected" | "reconnecting" | "offline";

export class LinkBadge {
  readonly #element: HTMLElement;
  readonly #text: HTMLElement;
  readonly #deviceId: string;
  #timer: ReturnType<typeof setInterval> | ReturnType<typeof setTimeout> | undefined;

  constructor(element: HTMLElement, deviceId: string) {
    this.#element = element;
    this.#text = element.querySelector(".text")!;
    this.#deviceId = deviceId;
    this.#set("connecting", `${deviceId} · connecting to ${location.host}…`);
  }

  connected(): void {
    this.#set("connected", `${this.#deviceId} · connected`);
    this.#timer = setTimeout(() => this.#element.classList.add("quiet"), QUIET_AFTER);
  }

  /** Shows the latest round-trip time while connected. */
  rtt(ms: number): void {
    if (this.#element.dataset.state === "connected") this.#text.textContent = `${this.#deviceId} · connected · ${ms} ms`;
  }

  /** Counts down `retryIn` ms to the next dial attempt. */
  reconnecting(retryIn: number): void {
    const at = Date.now() + retryIn;
    const tick = () => {
      const left = Math.ceil((at - Date.now()) / 1000);
      this.#text.textContent = left > 0 ? `${this.#deviceId} · link lost, reconnecting in ${left} s` : `${this.#deviceId} · reconnecting…`;
    };
    this.#set("reconnecting", "");
    tick();
    this.#timer = setInterval(tick, 250);
  }

  /** The listener gave up (refused by the server, or closed): only a reload tries again. */
  offline(reason: string): void {
    this.#set("offline", `${this.#deviceId} · offline: ${reason}. Reload to retry.`);
  }

  #set(state: LinkState, text: string): void {
    clearInterval(this.#timer as ReturnType<typeof setInterval>);
    clearTimeout(this.#timer as ReturnType<typeof setTimeout>);
    this.#element.classList.remove("quiet");
    this.#element.dataset.state = state;
    this.#text.textContent = text;
  }
}
