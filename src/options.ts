/**
 * Option checks, one family for every entry point (session, listener, reverse HTTP, server). Each returns
 * the value when it is acceptable, else throws a RangeError that names the option, what it must be and
 * what it got. Entry points call them up front, so a mistake fails at once, not on the first connection.
 */

function check(name: string, value: number, min: number, integer: boolean, finite: boolean, what: string): number {
  if (typeof value === "number" && value >= min && (!integer || Number.isInteger(value)) && (!finite || Number.isFinite(value))) return value;
  throw new RangeError(`wslis: ${name} must be ${what} of at least ${min}, not ${String(value)}`);
}

/** A count or a size: an integer of at least `min`. */
export const integerOption = (name: string, value: number, min = 1): number => check(name, value, min, true, true, "an integer");

/** A duration: a finite number of ms of at least `min` (where 0 is allowed, it turns the timer off). */
export const msOption = (name: string, value: number, min = 1): number => check(name, value, min, false, true, "a number of ms");

/** A number of at least `min`, Infinity included: delays, retries and factors that may be unbounded. */
export const numberOption = (name: string, value: number, min = 0): number => check(name, value, min, false, false, "a number");
