// Entry point of the root helper program; the protocol lands with the helper issue.
import { PRODUCT_VERSION } from '../version';

process.stdout.write(JSON.stringify({ event: 'hello', version: PRODUCT_VERSION }) + '\n');
