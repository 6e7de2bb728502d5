import pkg from '../../package.json' with { type: 'json' };

/** The product version, shared by the CLI, the helper (status verb) and the app. */
export const PRODUCT_VERSION: string = pkg.version;
