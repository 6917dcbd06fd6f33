/**
 * Typed events on a standard EventTarget: `target.addEventListener("connect", (e) => e.detail.x)` type-checks
 * in a strict consumer, and any other event name still takes a plain listener.
 */

// EventTarget's own parameter types, spelled so that they exist under Node's types as well as the DOM
// library's (Node's types do not declare AddEventListenerOptions and friends globally).
type AnyListener = Parameters<EventTarget["addEventListener"]>[1];
type AddOptions = Parameters<EventTarget["addEventListener"]>[2];
type RemoveOptions = Parameters<EventTarget["removeEventListener"]>[2];

/** An EventTarget whose events named in `M` carry the types `M` gives them. */
export interface TypedEventTarget<M> extends EventTarget {
  addEventListener<K extends keyof M & string>(type: K, listener: (event: M[K]) => void, options?: AddOptions): void;
  addEventListener(type: string, listener: AnyListener, options?: AddOptions): void;
  removeEventListener<K extends keyof M & string>(type: K, listener: (event: M[K]) => void, options?: RemoveOptions): void;
  removeEventListener(type: string, listener: AnyListener, options?: RemoveOptions): void;
}
