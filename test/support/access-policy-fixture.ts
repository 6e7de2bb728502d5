/** The installed reference policy (Debian selinux-policy-default), which .ci/run installs with setools. */
export const REFERENCE_POLICY = '/etc/selinux/default/policy/policy.33';

/**
 * A tiny policy, as sesearch and seinfo would print it, for tests of the access evaluator and its
 * CLI that must not depend on the installed policy or tools.
 */
import { buildAccessPolicy, type AccessPolicy, type PolicyToolOutputs } from '../../src/core/selinux/access/access-policy';

export const FIXTURE_SEINFO = `
Booleans: 2
   bool secure_mode false;
   bool virt_use_nfs false;

Categories: 4
   category c0;
   category c1;
   category c2;
   category c3;

Classes: 2
   class file
inherits file
{
	entrypoint
}
   class process
{
	signal
	transition
}

Commons: 1
   common file
{
	getattr
	open
	read
	write
}

Constraints: 2
   constrain process transition (u1 == u2 or ( t1 == can_change_process_identity )); 
   mlsconstrain file { open read write } (h1 dom h2 or ( t1 != mcs_constrained_type )); 

Permissive Types: 1
   permissive_t

Roles: 3
   role object_r types {  };
   role system_r types { permissive_t svirt_t virtd_t };
   role user_r types user_t;

Sensitivities: 1
   sensitivity s0;

Types: 7
   type etc_t, file_type;
   type nfs_t, file_type;
   type permissive_t, domain;
   type svirt_image_t alias { old_image_t older_image_t }, file_type, virt_image_type;
   type svirt_t, domain, mcs_constrained_type;
   type user_t, domain;
   type virtd_t, can_change_process_identity, domain;

Type Attributes: 5
   attribute can_change_process_identity;
	virtd_t
   attribute domain;
	permissive_t
	svirt_t
	user_t
	virtd_t
   attribute file_type;
	etc_t
	nfs_t
	svirt_image_t
   attribute mcs_constrained_type;
	svirt_t
   attribute virt_image_type;
	svirt_image_t

Users: 3
   user system_u roles system_r level s0 range s0 - s0:c0.c3;
   user unconfined_u roles system_r level s0 range s0 - s0:c0.c3;
   user user_u roles user_r level s0 range s0;
`;

export const FIXTURE_SESEARCH = `allow domain etc_t:file { getattr open read };
allow domain self:process signal;
allow svirt_t nfs_t:file { getattr open read }; [ virt_use_nfs ]:True
allow svirt_t virt_image_type:file { getattr open read write };
allow user_t nfs_t:file { getattr open read }; [ nfs_home_dirs ]:True
allow user_t etc_t:file write; [ ! secure_mode ]:False
allow virtd_t svirt_t:process transition;
dontaudit svirt_t etc_t:file write;
`;

export function fixtureOutputs(overrides: Partial<PolicyToolOutputs> = {}): PolicyToolOutputs {
  return { teRules: FIXTURE_SESEARCH, symbols: FIXTURE_SEINFO, ...overrides };
}

export function fixturePolicy(overrides: Partial<PolicyToolOutputs> = {}): AccessPolicy {
  return buildAccessPolicy(fixtureOutputs(overrides), 'policy:fixture');
}
