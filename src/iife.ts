/**
 * Types of the script-tag build (`wslis/iife`, dist/wslis.iife.js): the same API as the `wslis` entry, as
 * the global `wslis`. Nothing here runs; `import type {} from "wslis/iife"` (or
 * `/// <reference types="wslis/iife" />`) makes the global known to a page's scripts.
 */

declare global {
  /** The device SDK, defined by `<script src=".../wslis.iife.js">`. */
  var wslis: typeof import("./index.js");
}

export {};
