/* event.c -- one stream entry as the streamer keeps it: the message every
 * client receives, framed once ({"type":"event","id":...,"event":...}), and
 * the fields filters test, all in a single allocation shared by reference:
 * an atomic count of its holders (the shards, a replay answer), any of
 * which may release it from its own thread. Built by the reader or the
 * replay worker. */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "streamer.h"

static const char msg_head[] = "{\"type\":\"event\",\"id\":\"";
static const char msg_mid[] = "\",\"event\":";

struct sev *sev_new(const char *sid, const char *json, size_t len)
{
	struct rs_id id;
	const char *vals[FK_COUNT] = {0};
	size_t lens[FK_COUNT] = {0};
	size_t sidlen = strlen(sid), extra = 0;

	if (!json || sidlen >= sizeof ((struct sev *)0)->sid || rs_id_parse(sid, &id))
		return NULL;
	cJSON *root = cJSON_ParseWithLength(json, len);
	if (!root || !cJSON_IsObject(root)) {
		cJSON_Delete(root);
		return NULL;
	}
	for (int k = 0; k < FK_COUNT; k++) {
		const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, flt_key_field((enum flt_key)k));
		if (cJSON_IsString(it) && it->valuestring) {
			vals[k] = it->valuestring;
			lens[k] = strlen(it->valuestring);
			extra += lens[k] + 1;
		}
	}
	size_t msglen = sizeof msg_head - 1 + sidlen + sizeof msg_mid - 1 + len + 1;
	struct sev *e = malloc(sizeof *e + msglen + 1 + extra);
	if (!e) {
		cJSON_Delete(root);
		return NULL;
	}
	atomic_init(&e->refs, 1);
	e->id = id;
	memcpy(e->sid, sid, sidlen + 1);
	e->msg = e->data;
	char *p = e->msg;
	memcpy(p, msg_head, sizeof msg_head - 1);
	p += sizeof msg_head - 1;
	memcpy(p, sid, sidlen);
	p += sidlen;
	memcpy(p, msg_mid, sizeof msg_mid - 1);
	p += sizeof msg_mid - 1;
	memcpy(p, json, len);
	p += len;
	*p++ = '}';
	e->len = (size_t)(p - e->msg);
	*p++ = '\0';
	for (int k = 0; k < FK_COUNT; k++) {
		e->f.v[k] = NULL;
		e->f.len[k] = 0;
		if (!vals[k])
			continue;
		memcpy(p, vals[k], lens[k] + 1);
		e->f.v[k] = p;
		e->f.len[k] = lens[k];
		p += lens[k] + 1;
	}
	cJSON_Delete(root);
	return e;
}

void sev_unref(struct sev *e)
{
	if (e && atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) == 1)
		free(e);
}

void sev_share(struct sev *e, int n)
{
	atomic_store_explicit(&e->refs, n, memory_order_relaxed);
}
