/* yaml_pull: the benchmark peer for loading a playbook.
 *
 *     irp_yaml_pull [-c] FILE
 *     irp_yaml_pull -V
 *
 * Pulls every libyaml event from FILE and deletes it at once: no document
 * tree, no model, no checks.  This is the floor under `irp validate FILE`,
 * which has to do the same parse and more, so the ratio of the two says
 * what the loader and validator cost on top of libyaml.
 *
 * Exit status: 0 parsed, 1 YAML error (reported as FILE:LINE:COL on
 * stderr), 2 bad usage or unreadable file.  -c prints the event count;
 * -V prints the version of the libyaml it runs with.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <yaml.h>

int main(int argc, char **argv)
{
	int count = 0;
	int argi = 1;

	if (argc == 2 && strcmp(argv[1], "-V") == 0) {
		printf("libyaml %s\n", yaml_get_version_string());
		return 0;
	}
	if (argc == 3 && strcmp(argv[1], "-c") == 0) {
		count = 1;
		argi = 2;
	}
	if (argc != argi + 1) {
		fprintf(stderr, "usage: irp_yaml_pull [-c] FILE | -V\n");
		return 2;
	}
	const char *path = argv[argi];
	FILE *f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		return 2;
	}

	yaml_parser_t parser;
	if (!yaml_parser_initialize(&parser)) {
		fprintf(stderr, "%s: cannot initialise the YAML parser\n", path);
		fclose(f);
		return 2;
	}
	yaml_parser_set_input_file(&parser, f);

	int rc = 0;
	unsigned long long events = 0;
	for (;;) {
		yaml_event_t event;
		if (!yaml_parser_parse(&parser, &event)) {
			/* libyaml marks are 0-based; diagnostics are 1-based. */
			fprintf(stderr, "%s:%zu:%zu: error: %s\n", path,
			        parser.problem_mark.line + 1,
			        parser.problem_mark.column + 1,
			        parser.problem ? parser.problem : "YAML error");
			rc = 1;
			break;
		}
		events++;
		int done = event.type == YAML_STREAM_END_EVENT;
		yaml_event_delete(&event);
		if (done)
			break;
	}

	yaml_parser_delete(&parser);
	if (fclose(f) != 0 && rc == 0) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		rc = 2;
	}
	if (count && rc == 0)
		printf("%llu\n", events);
	return rc;
}
