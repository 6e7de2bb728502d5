/**
 * The policy profile: which SELinux types this host's policy uses for VMs and their images, and the
 * category range to allocate from. Built from the installed policy's own files (the caller reads them),
 * never hard-coded to one distribution; built-in defaults apply only when a file is absent.
 */
import { ContextSyntaxError, formatContext, parseContext, parseRange, type SecurityContext } from './context';

export interface CategoryRange {
  readonly sensitivity: number;
  /** Inclusive bounds, e.g. 0 and 1023 for c0.c1023. */
  readonly first: number;
  readonly last: number;
}

export interface PolicyProfile {
  /** SELINUXTYPE from /etc/selinux/config (e.g. `default`, `targeted`). */
  readonly policyType: string;
  /** True when one or more of the policy's files were absent and built-in defaults stand in. */
  readonly fallback: boolean;
  /** Base process label, line 1 of virtual_domain_context (e.g. system_u:system_r:svirt_t:s0). */
  readonly processContext: SecurityContext;
  /** Domain type for TCG (emulated) guests, line 2 of virtual_domain_context when present (Fedora: svirt_tcg_t). */
  readonly tcgProcessType?: string;
  /** Base image label, line 1 of virtual_image_context (svirt_image_t). */
  readonly imageContext: SecurityContext;
  /** Shared read-only content label, line 2 of virtual_image_context (virt_content_t). */
  readonly contentContext: SecurityContext;
  readonly categoryRange: CategoryRange;
  /** What was read and what fell back, for the status view. */
  readonly notes: readonly string[];
}

/** Today's Fedora targeted policy, used only for files that are missing. */
export const FALLBACK_PROFILE_FILES = {
  policyType: 'targeted',
  virtualDomainContext: 'system_u:system_r:svirt_t:s0\nsystem_u:system_r:svirt_tcg_t:s0\n',
  virtualImageContext: 'system_u:object_r:svirt_image_t:s0\nsystem_u:object_r:virt_content_t:s0\n',
} as const;

export const DEFAULT_CATEGORY_RANGE: CategoryRange = { sensitivity: 0, first: 0, last: 1023 };

/**
 * The one label of content several VMs use: shared read-write images get the profile's image type, read-only
 * content its content type, both at the bare sensitivity (s0), which every VM's pair dominates. Built here
 * only; the helper's relabel, the planner's view of it and the app's preview all take it from this function.
 */
export function sharedContentLabel(profile: PolicyProfile, kind: 'shared' | 'readonly', range: CategoryRange = profile.categoryRange): string {
  const low = { sensitivity: range.sensitivity, categories: [] };
  return formatContext({ ...(kind === 'shared' ? profile.imageContext : profile.contentContext), range: { low, high: low } });
}

/** Raw file contents as read by the caller; `undefined` means the file does not exist. */
export interface PolicyFiles {
  /** /etc/selinux/config */
  readonly selinuxConfig?: string;
  /** /etc/selinux/<type>/contexts/virtual_domain_context */
  readonly virtualDomainContext?: string;
  /** /etc/selinux/<type>/contexts/virtual_image_context */
  readonly virtualImageContext?: string;
}

export class PolicyProfileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PolicyProfileError';
  }
}

/** Reads a `KEY=value` from /etc/selinux/config (comments and blanks ignored). */
export function readSelinuxConfigValue(config: string, key: string): string | undefined {
  for (const raw of config.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const eq = line.indexOf('=');
    if (eq > 0 && line.slice(0, eq).trim() === key) return line.slice(eq + 1).trim().replace(/^"(.*)"$/, '$1');
  }
  return undefined;
}

function contextLines(file: string): string[] {
  return file.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
}

function parseLine(fileName: string, line: string): SecurityContext {
  try {
    return parseContext(line);
  } catch (e) {
    if (e instanceof ContextSyntaxError) throw new PolicyProfileError(`${fileName}: ${e.message}`);
    throw e;
  }
}

/** Parses `c0.c1023` (or `s0:c0.c1023`) into an allocation range. */
export function parseCategoryRange(text: string): CategoryRange {
  const withSens = text.startsWith('s') ? text : `s0:${text}`;
  if (withSens.includes('-')) throw new PolicyProfileError(`category range "${text}" must be a single level such as c0.c1023`);
  const { low } = parseRange(withSens);
  const cats = low.categories;
  const first = cats[0];
  const last = cats[cats.length - 1];
  if (first === undefined || last === undefined || cats.length !== last - first + 1) {
    throw new PolicyProfileError(`category range "${text}" must be one contiguous run such as c0.c1023`);
  }
  if (last - first < 1) throw new PolicyProfileError(`category range "${text}" must hold at least two categories to form a pair`);
  return { sensitivity: low.sensitivity, first, last };
}

/**
 * Builds the profile from the policy's files. A missing file falls back to the Fedora defaults (and the
 * profile says so); a present but malformed file is an error, since guessing would mislabel images.
 */
export function buildPolicyProfile(files: PolicyFiles, categoryRange: CategoryRange = DEFAULT_CATEGORY_RANGE): PolicyProfile {
  const notes: string[] = [];
  let fallback = false;

  let policyType = files.selinuxConfig === undefined ? undefined : readSelinuxConfigValue(files.selinuxConfig, 'SELINUXTYPE');
  if (!policyType) {
    policyType = FALLBACK_PROFILE_FILES.policyType;
    fallback = true;
    notes.push(`SELINUXTYPE not found; assuming "${policyType}"`);
  }

  let domainFile = files.virtualDomainContext;
  if (domainFile === undefined) {
    domainFile = FALLBACK_PROFILE_FILES.virtualDomainContext;
    fallback = true;
    notes.push('virtual_domain_context absent; using built-in svirt_t / svirt_tcg_t');
  }
  let imageFile = files.virtualImageContext;
  if (imageFile === undefined) {
    imageFile = FALLBACK_PROFILE_FILES.virtualImageContext;
    fallback = true;
    notes.push('virtual_image_context absent; using built-in svirt_image_t / virt_content_t');
  }

  const domainLines = contextLines(domainFile);
  const imageLines = contextLines(imageFile);
  if (domainLines.length === 0) throw new PolicyProfileError('virtual_domain_context is empty');
  if (imageLines.length < 2) throw new PolicyProfileError('virtual_image_context needs two lines: image label, then read-only content label');

  const processContext = parseLine('virtual_domain_context', domainLines[0] as string);
  const tcgLine = domainLines[1];
  const tcgProcessType = tcgLine === undefined ? undefined : parseLine('virtual_domain_context', tcgLine).type;
  const imageContext = parseLine('virtual_image_context', imageLines[0] as string);
  const contentContext = parseLine('virtual_image_context', imageLines[1] as string);

  return {
    policyType,
    fallback,
    processContext,
    ...(tcgProcessType === undefined ? {} : { tcgProcessType }),
    imageContext,
    contentContext,
    categoryRange,
    notes,
  };
}
