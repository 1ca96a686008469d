// Command compose-check validates Compose files without a Docker engine, the way
// `docker compose config` does: the compose-go loader checks each file against the Compose
// Specification's JSON schema (embedded in compose-go), interpolates variables, and checks that
// every service, network, volume, config and secret it refers to is defined.
//
//	compose-check [-print] FILE...
//
// Exit status 0 when the project loads, 1 with the loader's message when it does not.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/compose-spec/compose-go/v2/cli"
)

func main() {
	printConfig := flag.Bool("print", false, "print the normalised project, like `docker compose config`")
	flag.Parse()
	files := flag.Args()
	if len(files) == 0 {
		fmt.Fprintln(os.Stderr, "usage: compose-check [-print] FILE...")
		os.Exit(2)
	}
	options, err := cli.NewProjectOptions(
		files,
		cli.WithWorkingDirectory(filepath.Dir(files[0])),
		cli.WithOsEnv,
		cli.WithDotEnv,
		cli.WithName("nudge"),
		cli.WithProfiles([]string{"*"}), // check the services behind every profile too
	)
	if err != nil {
		fail(files, err)
	}
	project, err := options.LoadProject(context.Background())
	if err != nil {
		fail(files, err)
	}
	if *printConfig {
		out, err := project.MarshalYAML()
		if err != nil {
			fail(files, err)
		}
		os.Stdout.Write(out)
		return
	}
	fmt.Printf("compose-check: %v: valid (%d services)\n", files, len(project.Services))
}

func fail(files []string, err error) {
	fmt.Fprintf(os.Stderr, "compose-check: %v: %v\n", files, err)
	os.Exit(1)
}
