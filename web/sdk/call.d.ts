// Types of call.js. Everything it uses is declared in telehub.d.ts; this
// file only ties the `Call` class to this module, so that TypeScript imports
// it from call.js, where it lives at run time.
import type { CallApi, CallOptions } from './telehub.js';

/** A WebRTC call in one consultation room (see CallApi for its members). */
export interface Call extends CallApi {}
export declare const Call: new (options: CallOptions) => Call;
