// Maintenance windows and conditions for a device group by tag (docs/agent.md "Windows and conditions"):
// every assignment to a device carrying the tag is signed with this policy, unless its campaign has one.
import { z } from 'zod';
import { UpdatePolicy } from '../update-policy.ts';
import { defineRoute, errors, type RouteContract } from './contract.ts';

export const TagParams = z.object({ tag: z.string().min(1).max(64) }).strict();
export const TagPolicyView = z.object({
  tag: z.string(), policy: UpdatePolicy, updatedAt: z.string(), updatedBy: z.string(),
}).meta({ id: 'TagPolicy' });
export type TagPolicyView = z.infer<typeof TagPolicyView>;

const tags = ['devices'];
export const tagPoliciesContract = {
  listTagPolicies: defineRoute({
    method: 'GET', path: '/v1/tag-policies', summary: 'maintenance windows and conditions per device tag', tags,
    responses: { 200: z.object({ policies: z.array(TagPolicyView) }), ...errors(401, 403) },
  }),
  putTagPolicy: defineRoute({
    method: 'PUT', path: '/v1/tag-policies/:tag', summary: 'set the maintenance windows and conditions of the devices carrying a tag (a campaign policy takes precedence; a device with several tags follows the first in alphabetical order)', tags,
    params: TagParams, body: UpdatePolicy, responses: { 200: TagPolicyView, ...errors(400, 401, 403) },
  }),
  deleteTagPolicy: defineRoute({
    method: 'DELETE', path: '/v1/tag-policies/:tag', summary: 'remove the policy of a tag (assignments made from now on carry none for it)', tags,
    params: TagParams, responses: { 200: z.object({ deleted: z.boolean() }), ...errors(400, 401, 403) },
  }),
} satisfies Record<string, RouteContract>;

export const tagPoliciesRoutes: RouteContract[] = Object.values(tagPoliciesContract);
