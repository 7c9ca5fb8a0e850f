/* test_guard.c -- unit tests for common/guard.c: a table of commands the
 * built-in policy must block (each with the rule expected) and look-alikes
 * it must let through, evaluated with a known home and working directory;
 * file paths; YAML policies (user rules, protected_paths, builtin: false,
 * errors); tool_input dispatch; determinism. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "guard.h"

static const struct guard_ctx cx = {"/home/dev", "/home/dev/shop"};

struct row {
	const char *cmd;
	const char *rule; /* NULL: allowed */
};

static const struct row table[] = {
	/* the root */
	{"rm -rf /", "rm-root"},
	{"rm -rf /*", "rm-root"},
	{"rm -fr /*", "rm-root"},
	{"rm -r -f /", "rm-root"},
	{"rm -R -f /", "rm-root"},
	{"rm --recursive --force /", "rm-root"},
	{"rm / -rf", "rm-root"},
	{"rm -rfv //", "rm-root"},
	{"rm -rf /tmp/../", "rm-root"},
	{"rm -rf \"/\"", "rm-root"},
	{"sudo rm -rf /", "rm-root"},
	{"sudo -u root -- rm -rf /*", "rm-root"},
	{"/bin/rm -rf /", "rm-root"},
	{"\\rm -rf /", "rm-root"},
	{"r''m -rf /", "rm-root"},
	{"rm -rf --no-preserve-root /", "rm-no-preserve-root"},
	{"sudo rm --no-preserve-root -r /", "rm-no-preserve-root"},
	{"cd / && rm -rf *", "rm-root"},
	{"rm -rf /{bin,usr}", "rm-root"},
	/* home */
	{"rm -rf ~", "rm-home"},
	{"rm -rf ~/", "rm-home"},
	{"rm -rf ~/*", "rm-home"},
	{"rm -rf $HOME", "rm-home"},
	{"rm -rf \"$HOME\"/", "rm-home"},
	{"rm -rf ${HOME}", "rm-home"},
	{"rm -rf /home/dev", "rm-home"},
	{"rm -rf ..", "rm-home"},
	{"cd ~ && rm -rf .", "rm-home"},
	{"sudo rm -rf ~/.", "rm-home"},
	/* system directories */
	{"rm -rf /usr", "rm-system"},
	{"rm -rf /etc/", "rm-system"},
	{"rm -rf ../..", "rm-system"},
	{"find / -delete", "find-delete-root"},
	{"find ~ -type f -exec rm -f {} +", "find-delete-home"},
	/* wrappers and nested shells */
	{"bash -c 'rm -rf /'", "rm-root"},
	{"sh -c \"sudo rm -rf ~\"", "rm-home"},
	{"bash -lc 'cd / && rm -rf *'", "rm-root"},
	{"eval \"rm -rf /\"", "rm-root"},
	{"echo $(rm -rf /)", "rm-root"},
	{"echo `rm -rf ~`", "rm-home"},
	{"echo 'rm -rf /' | bash", "rm-root"},
	{"bash <<EOF\nrm -rf /\nEOF", "rm-root"},
	{"env -S 'rm -rf /'", "rm-root"},
	{"env FOO=1 rm -rf /", "rm-root"},
	{"nohup rm -rf / &", "rm-root"},
	{"timeout 10 rm -rf /", "rm-root"},
	{"nice -n 10 rm -rf ~", "rm-home"},
	{"xargs rm -rf /", "rm-root"},
	{"make clean; rm -rf /", "rm-root"},
	{"true && (rm -rf /)", "rm-root"},
	{"git commit -m \"$(cat <<'EOF'\ndon't\nEOF\n)\" && rm -rf /", "rm-root"},
	/* disks */
	{"mkfs.ext4 /dev/sda1", "disk-format"},
	{"sudo mkfs -t xfs /dev/nvme0n1p2", "disk-format"},
	{"mkswap /dev/sdb2", "disk-format"},
	{"dd if=/dev/zero of=/dev/sda bs=1M", "disk-write"},
	{"sudo dd if=ubuntu.iso of=/dev/nvme0n1 status=progress", "disk-write"},
	{"dd if=/dev/urandom of=/dev/mmcblk0", "disk-write"},
	{"cat disk.img > /dev/sdb", "disk-write"},
	{"echo 0 | sudo tee /dev/vda", "disk-write"},
	{"wipefs -a /dev/sda", "disk-write"},
	{"shred -vz /dev/sdc", "disk-write"},
	/* fork bombs */
	{":(){ :|:& };:", "fork-bomb"},
	{":(){ :|: & }; :", "fork-bomb"},
	{"bomb() { bomb | bomb & }; bomb", "fork-bomb"},
	{"perl -e 'fork while fork'", "fork-bomb"},
	/* permissions */
	{"chmod -R 777 /", "chmod-root"},
	{"sudo chmod -R 777 /", "chmod-root"},
	{"chmod --recursive a+rwx /", "chmod-root"},
	{"chmod 777 /", "chmod-root"},
	{"chmod -R 755 /usr", "chmod-system"},
	{"chown -R nobody:nogroup /", "chown-root"},
	{"chmod -R 777 ~", "chmod-home"},

	/* look-alikes that must pass */
	{"rm -rf ./build", NULL},
	{"rm -rf build", NULL},
	{"rm -rf node_modules", NULL},
	{"rm -rf /tmp/some-dir", NULL},
	{"rm -rf /tmp/*", NULL},
	{"rm -rf ~/.cache/pip", NULL},
	{"rm -rf \"$HOME/projects/old\"", NULL},
	{"rm -rf $BUILD_DIR/", NULL},
	{"rm -f /tmp/x.log", NULL},
	{"rm /etc/hosts.bak", NULL},
	{"rm -r dist/ coverage/", NULL},
	{"rm -rf .", NULL},
	{"rm -rf /var/tmp/cache", NULL},
	{"sudo rm -rf /opt/myapp/releases/old", NULL},
	{"cd /tmp && rm -rf *", NULL},
	{"find . -name '*.o' -delete", NULL},
	{"find /tmp -name 'x*' -delete", NULL},
	{"find / -name core", NULL},
	{"dd if=/dev/zero of=./disk.img bs=1M count=10", NULL},
	{"dd if=/dev/sda of=backup.img", NULL},
	{"mkfs.ext4 ./disk.img", NULL},
	{"wipefs /dev/sda", NULL},
	{"fdisk -l /dev/sda", NULL},
	{"ls > /dev/null 2>&1", NULL},
	{"echo hi >&2", NULL},
	{"chmod -R 755 ./build", NULL},
	{"chmod +x script.sh", NULL},
	{"chmod 777 /tmp/shared", NULL},
	{"chown -R $USER ~/shop", NULL},
	{"echo \"rm -rf /\"", NULL},
	{"grep -rn 'rm -rf /' docs/", NULL},
	{"git commit -m \"$(cat <<'EOF'\nguard: block rm -rf / and rm -rf ~\nEOF\n)\"", NULL},
	{"cat <<EOF > notes.md\nnever run rm -rf /\nEOF", NULL},
	{"python3 -c \"print('rm -rf /')\"", NULL},
	{"# rm -rf /\nls", NULL},
	{"f(){ echo hi; }; f", NULL},
	{"npm run clean && rm -rf dist", NULL},
	{"docker system prune -af", NULL},
	{"kill -9 1234", NULL},
	{"pytest -q tests/ | tail -5", NULL},
};

static void test_table(void **state)
{
	(void)state;
	struct guard_policy *p = guard_policy_builtin();
	size_t blocked = 0, allowed = 0, wrong = 0;
	for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
		struct guard_verdict v;
		int b = guard_check_command(p, table[i].cmd, &cx, &v);
		int want = table[i].rule != NULL;
		if (b != want || (want && strcmp(v.rule, table[i].rule))) {
			print_error("%s: got %s (%s), want %s\n", table[i].cmd, b ? "block" : "allow",
			            b ? v.rule : "-", want ? table[i].rule : "allow");
			wrong++;
		}
		if (b) {
			/* one line, naming the rule */
			assert_null(strchr(v.reason, '\n'));
			assert_non_null(strstr(v.reason, v.rule));
			assert_int_equal(v.block, 1);
		} else {
			assert_int_equal(v.block, 0);
		}
		blocked += want;
		allowed += !want;
	}
	assert_int_equal(wrong, 0);
	assert_true(blocked >= 40 && allowed >= 30);
	guard_policy_free(p);
}

static void test_unknown_cwd_and_home(void **state)
{
	(void)state;
	struct guard_policy *p = guard_policy_builtin();
	struct guard_ctx none = {NULL, NULL};
	struct guard_verdict v;
	/* the syntactic forms still count as home */
	assert_int_equal(guard_check_command(p, "rm -rf ~/", &none, &v), 1);
	assert_string_equal(v.rule, "rm-home");
	assert_int_equal(guard_check_command(p, "rm -rf $HOME", &none, &v), 1);
	assert_int_equal(guard_check_command(p, "rm -rf ~/..", &none, &v), 1);
	/* anyone's home directory, with or without knowing ours */
	assert_int_equal(guard_check_command(p, "sudo rm -rf /home/bob", &none, &v), 1);
	assert_string_equal(v.rule, "rm-home");
	assert_int_equal(guard_check_command(p, "rm -rf /Users/alice/", &none, &v), 1);
	assert_int_equal(guard_check_command(p, "rm -rf /home/bob/tmp", &none, &v), 0);
	/* relative paths cannot be resolved: allowed */
	assert_int_equal(guard_check_command(p, "rm -rf ..", &none, &v), 0);
	assert_int_equal(guard_check_command(p, "rm -rf build", &none, &v), 0);
	/* but a cd to a known place makes them resolvable */
	assert_int_equal(guard_check_command(p, "cd / ; rm -rf *", &none, &v), 1);
	/* HOME=/ must not make every path "home" */
	struct guard_ctx slash = {"/", "/srv/app"};
	assert_int_equal(guard_check_command(p, "rm -rf ./tmp", &slash, &v), 0);
	guard_policy_free(p);
}

static void test_paths(void **state)
{
	(void)state;
	struct guard_policy *p = guard_policy_builtin();
	struct guard_verdict v;
	assert_int_equal(guard_check_path(p, "Write", "/dev/sda", &cx, &v), 1);
	assert_string_equal(v.rule, "disk-write");
	assert_int_equal(guard_check_path(p, "Edit", "/etc/sudoers", &cx, &v), 1);
	assert_string_equal(v.rule, "system-file");
	assert_int_equal(guard_check_path(p, "Write", "/boot/grub/grub.cfg", &cx, &v), 1);
	assert_int_equal(guard_check_path(p, "Write", "/home/dev/shop/app.py", &cx, &v), 0);
	assert_int_equal(guard_check_path(p, "Write", "/etc/hosts.d/x", &cx, &v), 0);
	/* reading is not guarded */
	assert_int_equal(guard_check_path(p, "Read", "/etc/shadow", &cx, &v), 0);
	guard_policy_free(p);
}

static void test_tool_input(void **state)
{
	(void)state;
	struct guard_policy *p = guard_policy_builtin();
	struct guard_verdict v;
	cJSON *in = cJSON_Parse("{\"command\":\"sudo rm -rf /\",\"description\":\"clean\"}");
	assert_int_equal(guard_check_tool(p, "Bash", in, &cx, &v), 1);
	assert_string_equal(v.rule, "rm-root");
	/* the same text as another tool's argument is not a command */
	assert_int_equal(guard_check_tool(p, "Grep", in, &cx, &v), 0);
	cJSON_Delete(in);
	in = cJSON_Parse("{\"file_path\":\"/dev/nvme0n1\",\"content\":\"\"}");
	assert_int_equal(guard_check_tool(p, "Write", in, &cx, &v), 1);
	cJSON_Delete(in);
	in = cJSON_Parse("{\"notebook_path\":\"/home/dev/a.ipynb\"}");
	assert_int_equal(guard_check_tool(p, "NotebookEdit", in, &cx, &v), 0);
	cJSON_Delete(in);
	assert_int_equal(guard_check_tool(p, "Bash", NULL, &cx, &v), 0);
	assert_int_equal(guard_check_tool(NULL, "Bash", NULL, &cx, &v), 0);
	guard_policy_free(p);
}

static void test_yaml_policy(void **state)
{
	(void)state;
	char err[256];
	const char *y = "builtin: true\n"
	                "protected_paths: [/data, ~/keep]\n"
	                "deny:\n"
	                "  - name: no-force-push\n"
	                "    command: 'git[[:space:]]+push.*(-f|--force)'\n"
	                "    reason: force-pushing rewrites history\n"
	                "  - name: no-env\n"
	                "    path: '(^|/)\\.env$'\n"
	                "    tools: [Write, Edit]\n"
	                "  - name: shout\n"
	                "    command: 'drop table'\n"
	                "    ignore_case: true\n";
	struct guard_policy *p = guard_policy_parse(y, strlen(y), err, sizeof err);
	assert_non_null(p);
	struct guard_verdict v;
	assert_int_equal(guard_check_command(p, "git push --force origin main", &cx, &v), 1);
	assert_string_equal(v.rule, "user:no-force-push");
	assert_non_null(strstr(v.reason, "force-pushing rewrites history"));
	assert_int_equal(guard_check_command(p, "git push origin main", &cx, &v), 0);
	assert_int_equal(guard_check_command(p, "psql -c 'DROP TABLE users'", &cx, &v), 1);
	assert_int_equal(guard_check_path(p, "Write", "/home/dev/shop/.env", &cx, &v), 1);
	assert_string_equal(v.rule, "user:no-env");
	assert_int_equal(guard_check_path(p, "Read", "/home/dev/shop/.env", &cx, &v), 0);
	/* protected_paths replaced the defaults: /data and ~/keep now, /usr not */
	assert_int_equal(guard_check_command(p, "rm -rf /data", &cx, &v), 1);
	assert_int_equal(guard_check_command(p, "rm -rf ~/keep/", &cx, &v), 1);
	assert_int_equal(guard_check_command(p, "rm -rf /usr", &cx, &v), 0);
	/* root and home stay protected */
	assert_int_equal(guard_check_command(p, "rm -rf /", &cx, &v), 1);
	assert_int_equal(guard_check_command(p, "rm -rf ~", &cx, &v), 1);
	guard_policy_free(p);

	/* builtin: false leaves only the user's rules */
	const char *off = "builtin: false\ndeny:\n  - command: '^reboot'\n";
	p = guard_policy_parse(off, strlen(off), err, sizeof err);
	assert_non_null(p);
	assert_int_equal(guard_check_command(p, "rm -rf /", &cx, &v), 0);
	assert_int_equal(guard_check_command(p, "reboot now", &cx, &v), 1);
	assert_string_equal(v.rule, "user:rule-1");
	guard_policy_free(p);

	/* an empty file is the built-in policy */
	p = guard_policy_parse("", 0, err, sizeof err);
	assert_non_null(p);
	assert_int_equal(guard_check_command(p, "rm -rf /usr", &cx, &v), 1);
	guard_policy_free(p);
}

static void test_yaml_errors(void **state)
{
	(void)state;
	static const struct {
		const char *yaml, *want;
	} bad[] = {
		{"builtin: maybe\n", "builtin"},
		{"protect: [/x]\n", "unknown key \"protect\""},
		{"protected_paths: [relative/dir]\n", "not an absolute path"},
		{"protected_paths: /x\n", "expected a list"},
		{"deny:\n  - command: '('\n", "bad regular expression"},
		{"deny:\n  - name: x\n", "exactly one of command: or path:"},
		{"deny:\n  - command: a\n    path: b\n", "exactly one of"},
		{"deny:\n  - command: a\n    colour: red\n", "unknown key \"colour\""},
		{"deny: {a: 1}\n", "expected a list of rules"},
		{"deny: [\n", "line"},
		{"- a\n- b\n", "must be a mapping"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char err[256] = "";
		struct guard_policy *p = guard_policy_parse(bad[i].yaml, strlen(bad[i].yaml), err, sizeof err);
		if (p || !strstr(err, bad[i].want))
			print_error("%s -> %s (want \"%s\")\n", bad[i].yaml, p ? "accepted" : err, bad[i].want);
		assert_null(p);
		assert_non_null(strstr(err, bad[i].want));
	}
	char err[256];
	assert_null(guard_policy_load("/nonexistent/hook-policy.yaml", err, sizeof err));
	assert_non_null(strstr(err, "No such file"));
}

static void test_deterministic_and_robust(void **state)
{
	(void)state;
	struct guard_policy *p = guard_policy_builtin();
	struct guard_verdict a, b;
	for (int i = 0; i < 3; i++) {
		assert_int_equal(guard_check_command(p, "sudo bash -c 'cd / && rm -rf *'", &cx, &a), 1);
		assert_int_equal(guard_check_command(p, "sudo bash -c 'cd / && rm -rf *'", &cx, &b), 1);
		assert_string_equal(a.reason, b.reason);
	}
	/* junk and unterminated syntax never crash and never block by accident */
	static const char *junk[] = {"", "'", "\"", "$(", "`", "((((((", "))))", "<<", "<<EOF", "a |",
		"${", "$'\\x", "\\", "rm", "rm -rf", "rm -rf ''", "; ; ;", "&&&", NULL};
	for (const char *const *j = junk; *j; j++)
		assert_int_equal(guard_check_command(p, *j, &cx, &a), 0);
	assert_int_equal(guard_check_command(p, NULL, &cx, &a), 0);
	/* deep nesting is bounded */
	char deep[4096];
	size_t o = 0;
	for (int i = 0; i < 200; i++)
		o += (size_t)snprintf(deep + o, sizeof deep - o, "$(");
	o += (size_t)snprintf(deep + o, sizeof deep - o, "ls");
	for (int i = 0; i < 200; i++)
		o += (size_t)snprintf(deep + o, sizeof deep - o, ")");
	assert_int_equal(guard_check_command(p, deep, &cx, &a), 0);
	/* a long command with the dangerous part at the end */
	size_t n = 200000;
	char *big = malloc(n + 32);
	memset(big, 'a', n);
	memcpy(big + n, " ; rm -rf /", 12);
	big[5000] = ' ';
	assert_int_equal(guard_check_command(p, big, &cx, &a), 1);
	free(big);
	guard_policy_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_unknown_cwd_and_home),
		cmocka_unit_test(test_paths),
		cmocka_unit_test(test_tool_input),
		cmocka_unit_test(test_yaml_policy),
		cmocka_unit_test(test_yaml_errors),
		cmocka_unit_test(test_deterministic_and_robust),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
