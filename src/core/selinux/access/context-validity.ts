/**
 * Whether a context could exist under the policy, checked as libsepol's policydb_context_isvalid and
 * mls_context_isvalid do: known user, role and type; unless the role is object_r, the role must be
 * authorized for the type, the user for the role, and the user's range must contain the context's.
 * The kernel never holds an invalid context, so no access decision is made for one.
 */
import { dominates, formatLevel, formatRange, type Level, type SecurityContext } from '../context';
import type { AccessPolicy } from './access-policy';

export type ContextCheck = { readonly ok: true; readonly context: SecurityContext } | { readonly ok: false; readonly why: string };

const OBJECT_ROLE = 'object_r';

function levelProblem(policy: AccessPolicy, level: Level): string | undefined {
  const { sensitivities, categories } = policy.symbols;
  if (!sensitivities.has(level.sensitivity)) return `sensitivity s${level.sensitivity} is not defined`;
  const undefinedCategory = level.categories.find((c) => !categories.has(c));
  if (undefinedCategory !== undefined) return `category c${undefinedCategory} is not defined`;
  // seinfo does not print `level` statements; with one sensitivity every category is allowed with it.
  if (sensitivities.size > 1 && level.categories.length > 0) return `which categories level ${formatLevel(level)} may carry is not read for multi-sensitivity policies`;
  return undefined;
}

/** Checks a context and resolves a type alias to its primary name. */
export function checkContext(policy: AccessPolicy, context: SecurityContext): ContextCheck {
  const { users, roles, types, aliases, attributes } = policy.symbols;
  const user = users.get(context.user);
  if (!user) return { ok: false, why: `user ${context.user} is not defined` };
  const roleTypes = roles.get(context.role);
  if (!roleTypes) return { ok: false, why: `role ${context.role} is not defined` };
  const type = aliases.get(context.type) ?? context.type;
  const typeAttributes = types.get(type);
  if (!typeAttributes) {
    return { ok: false, why: attributes.has(type) ? `${type} is an attribute, not a type` : `type ${context.type} is not defined` };
  }
  if (context.role !== OBJECT_ROLE) {
    if (!roleTypes.has(type) && !typeAttributes.some((attribute) => roleTypes.has(attribute))) {
      return { ok: false, why: `role ${context.role} is not authorized for type ${type}` };
    }
    if (!user.roles.has(context.role)) return { ok: false, why: `user ${context.user} is not authorized for role ${context.role}` };
  }
  if (!policy.mls) {
    if (context.range) return { ok: false, why: 'the policy has no MLS, but the context has a level' };
    return { ok: true, context: { ...context, type } };
  }
  const range = context.range;
  if (!range) return { ok: false, why: 'the policy has MLS, but the context has no level' };
  const problem = levelProblem(policy, range.low) ?? levelProblem(policy, range.high);
  if (problem) return { ok: false, why: problem };
  if (context.role !== OBJECT_ROLE) {
    if (!user.range) return { ok: false, why: `user ${context.user} has no range` };
    if (!dominates(range.low, user.range.low) || !dominates(user.range.high, range.high)) {
      return { ok: false, why: `range ${formatRange(range)} is outside user ${context.user}'s range ${formatRange(user.range)}` };
    }
  }
  return { ok: true, context: { ...context, type } };
}
