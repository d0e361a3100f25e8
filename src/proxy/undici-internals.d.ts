/**
 * Types for the undici files upstream-pool.ts and undici-continue.ts import directly (undici 7.30.2, pinned): the same
 * classes and functions its index exports, without loading the rest of the package.
 */
declare module 'undici/lib/dispatcher/client.js' {
  import { Client } from 'undici';
  export default Client;
}
declare module 'undici/lib/dispatcher/pool.js' {
  import { Pool } from 'undici';
  export default Pool;
}
declare module 'undici/lib/core/connect.js' {
  import { buildConnector } from 'undici';
  export default buildConnector;
}
declare module 'undici/lib/core/symbols.js' {
  const symbols: { readonly kParser: symbol; readonly kRunning: symbol };
  export default symbols;
}
declare module 'undici/lib/core/util.js' {
  const util: { headerNameToString(value: string | Buffer): string };
  export default util;
}
